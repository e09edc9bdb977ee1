package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sirupsen/logrus"
)

// conditional holds the validators of a revalidation request.
type conditional struct {
	etag, lastModified string
}

func (c *conditional) apply(req *http.Request) {
	if c == nil {
		return
	}
	if c.etag != "" {
		req.Header.Set("If-None-Match", c.etag)
	}
	if c.lastModified != "" {
		req.Header.Set("If-Modified-Since", c.lastModified)
	}
}

func (c *conditional) notModified() Info {
	return Info{Length: -1, ETag: c.etag, LastModified: c.lastModified, NotModified: true}
}

// Probe learns length, range support and validators. It sends HEAD first; if
// HEAD is refused (403, 405, 501) or gives no Content-Length, it sends GET
// with "Range: bytes=0-0" and reads the total from Content-Range (a 200 answer
// means no range support: its Content-Length is used and its body closed
// unread). Temporary errors are retried with backoff; permanent ones return
// *StatusError at once. header is sent to the origin as given (credentials);
// its values are never logged.
func (c *Client) Probe(ctx context.Context, rawURL string, header http.Header) (Info, error) {
	info, err := c.probe(ctx, "probe", rawURL, header, nil)
	return info, err
}

// Validate asks whether content with these validators is still current with
// a conditional HEAD carrying If-None-Match (etag) and If-Modified-Since
// (lastModified), either of which may be empty. A 304 answer gives
// Info{NotModified: true} with the validators as given and Length -1; any
// other success gives fresh Info as Probe would (NotModified false). HEAD
// fallbacks and retries are as for Probe.
func (c *Client) Validate(ctx context.Context, rawURL string, header http.Header, etag, lastModified string) (Info, error) {
	return c.probe(ctx, "validate", rawURL, header, &conditional{etag: etag, lastModified: lastModified})
}

func (c *Client) probe(ctx context.Context, what, rawURL string, header http.Header, cond *conditional) (Info, error) {
	redacted, err := checkURL(rawURL)
	if err != nil {
		return Info{Length: -1}, fmt.Errorf("%s: %w", what, err)
	}
	log := c.log.WithField("url", redacted)
	var info Info
	err = c.retry(ctx, log, what, func(attempt int) (bool, error) {
		var err error
		info, err = c.probeOnce(ctx, rawURL, redacted, header, cond, log.WithField("attempt", attempt))
		return false, err
	})
	if err != nil {
		return Info{Length: -1}, fmt.Errorf("%s %s: %w", what, redacted, err)
	}
	log.WithFields(logrus.Fields{"length": info.Length, "acceptRanges": info.AcceptRanges,
		"notModified": info.NotModified}).Debugf("source: %s done", what)
	return info, nil
}

func (c *Client) probeOnce(ctx context.Context, rawURL, redacted string, header http.Header, cond *conditional, log logrus.FieldLogger) (Info, error) {
	req, err := newRequest(ctx, http.MethodHead, rawURL, redacted, header)
	if err != nil {
		return Info{}, err
	}
	cond.apply(req)
	resp, err := c.do(req, redacted)
	if err != nil {
		return Info{}, err
	}
	discard(resp)
	log.WithField("status", resp.StatusCode).Debug("source: HEAD answered")
	switch code := resp.StatusCode; {
	case code == http.StatusNotModified && cond != nil:
		return cond.notModified(), nil
	case code >= 200 && code < 300 && code != http.StatusPartialContent:
		info := infoFromHeader(resp.Header)
		info.Length = resp.ContentLength // for HEAD: the Content-Length header, -1 if absent
		if info.Length >= 0 {
			return info, nil
		}
		log.Debug("source: HEAD gave no Content-Length; probing with a range GET")
	case code == http.StatusMethodNotAllowed || code == http.StatusNotImplemented || code == http.StatusForbidden:
		// 403: URLs presigned for GET only (S3 and alike) refuse HEAD.
		log.WithField("status", code).Debug("source: HEAD refused; probing with a range GET")
	default:
		return Info{}, statusError(resp, redacted)
	}
	return c.rangeProbe(ctx, rawURL, redacted, header, cond, log)
}

// rangeProbe asks for the first byte of the content.
func (c *Client) rangeProbe(ctx context.Context, rawURL, redacted string, header http.Header, cond *conditional, log logrus.FieldLogger) (Info, error) {
	req, err := newRequest(ctx, http.MethodGet, rawURL, redacted, header)
	if err != nil {
		return Info{}, err
	}
	req.Header.Set("Range", "bytes=0-0")
	cond.apply(req)
	resp, err := c.do(req, redacted)
	if err != nil {
		return Info{}, err
	}
	log.WithField("status", resp.StatusCode).Debug("source: range GET answered")
	switch code := resp.StatusCode; {
	case code == http.StatusNotModified && cond != nil:
		discard(resp)
		return cond.notModified(), nil
	case code == http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		discard(resp)
		_, _, total, ok := parseContentRange(cr)
		if !ok {
			return Info{}, permanent(fmt.Errorf("malformed Content-Range %q in answer to a range request", cr))
		}
		info := infoFromHeader(resp.Header)
		info.AcceptRanges = true
		info.Length = total
		return info, nil
	case code == http.StatusRequestedRangeNotSatisfiable:
		// An empty body has no byte 0: "bytes */0".
		cr := resp.Header.Get("Content-Range")
		if start, _, total, ok := parseContentRange(cr); ok && start < 0 {
			discard(resp)
			info := infoFromHeader(resp.Header)
			info.AcceptRanges = true
			info.Length = total
			return info, nil
		}
		return Info{}, statusError(resp, redacted)
	case code >= 200 && code < 300:
		// The whole body is on its way: close it unread.
		_ = resp.Body.Close()
		info := infoFromHeader(resp.Header)
		info.AcceptRanges = false
		info.Length = resp.ContentLength
		return info, nil
	default:
		return Info{}, statusError(resp, redacted)
	}
}

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
	log.WithField("bytes", written).Debug("source: download done")
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
	log.WithFields(logrus.Fields{"status": resp.StatusCode, "offset": *written}).Debug("source: GET answered")
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
			log.WithField("discard", skip).Info("source: origin cannot resume; re-reading from the start")
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
