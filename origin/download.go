package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sirupsen/logrus"
)

// Download streams the whole body to w, for origins that do not give a
// length. It returns the Info from the response headers (Length -1 for a
// body without Content-Length) and the number of bytes written. Failures
// before the first byte are retried; a body cut after bytes reached w is
// resumed only when the origin gave a strong ETag to resume against (Range
// plus If-Range), since without one a second GET may be different content.
func (c *Client) Download(ctx context.Context, rawURL string, header http.Header, w io.Writer) (Info, int64, error) {
	redacted, err := checkURL(rawURL)
	if err != nil {
		return Info{Length: -1}, 0, fmt.Errorf("download: %w", err)
	}
	log := c.log.WithField("url", redacted)
	var (
		info    = Info{Length: -1}
		written int64
		buf     = make([]byte, readChunk)
	)
	err = c.retry(ctx, log, "download", func(attempt int) (bool, error) {
		before := written
		err := c.downloadOnce(ctx, rawURL, redacted, header, w, &info, &written, buf, log.WithField("attempt", attempt))
		return written > before, err
	})
	if err != nil {
		return info, written, fmt.Errorf("download %s (%d bytes written): %w", redacted, written, err)
	}
	log.WithField("bytes", written).Debug("origin: download done")
	return info, written, nil
}

func (c *Client) downloadOnce(ctx context.Context, rawURL, redacted string, header http.Header, w io.Writer,
	info *Info, written *int64, buf []byte, log logrus.FieldLogger) error {
	etag := strongETag(info.ETag)
	if *written > 0 && etag == "" {
		return permanent(errors.New("cannot resume a cut body: origin gave no strong ETag"))
	}
	req, err := newRequest(ctx, http.MethodGet, rawURL, redacted, header)
	if err != nil {
		return err
	}
	if *written > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", *written))
		req.Header.Set("If-Range", etag)
	}
	resp, err := c.do(req, redacted)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	log.WithFields(logrus.Fields{"status": resp.StatusCode, "offset": *written}).Debug("origin: GET answered")
	var skip int64
	switch code := resp.StatusCode; {
	case code == http.StatusPartialContent && *written > 0:
		start, _, _, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != *written {
			return permanent(fmt.Errorf("origin answered range %q to a request from byte %d", resp.Header.Get("Content-Range"), *written))
		}
		if err := checkValidators(*info, resp.Header); err != nil {
			return err
		}
	case code >= 200 && code < 300 && code != http.StatusPartialContent:
		if *written == 0 {
			*info = infoFromHeader(resp.Header)
			info.Length = resp.ContentLength
		} else {
			// Resume refused: the If-Range validator no longer matches, or
			// the origin ignores ranges. Only the latter can be recovered.
			if resp.Header.Get("ETag") != info.ETag {
				return fmt.Errorf("%w: answered %s to a resume with If-Range", ErrChanged, resp.Status)
			}
			skip = *written
			log.WithField("discard", skip).Info("origin: cannot resume; re-reading from the start")
		}
	default:
		return statusError(resp, redacted)
	}
	for skip > 0 {
		n, err := resp.Body.Read(buf[:min(int64(len(buf)), skip)])
		skip -= int64(n)
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("%w: body shorter on second read", ErrChanged)
			}
			return err
		}
	}
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			*written += int64(m)
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return permanent(fmt.Errorf("write: %w", werr))
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
