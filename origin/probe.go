package origin

import (
	"context"
	"fmt"
	"net/http"

	"github.com/sirupsen/logrus"
)

// Info is what an origin says about a URL's content.
type Info struct {
	Length       int64 // -1 when the origin does not say
	AcceptRanges bool
	ETag         string
	LastModified string
	NotModified  bool // Validate only: the origin answered 304
}

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
	info, err := c.probe(ctx, "probe", rawURL, header, nil, false)
	return info, err
}

// ProbeRange is Probe without the HEAD: it asks for the first byte with a
// ranged GET at once (retries and budget as Probe's), for URLs that answer
// GET only: an object store's presigned GET URLs refuse HEAD, on which
// Probe would spend a request each time.
func (c *Client) ProbeRange(ctx context.Context, rawURL string, header http.Header) (Info, error) {
	return c.probe(ctx, "probe", rawURL, header, nil, true)
}

// Validate asks whether content with these validators is still current with
// a conditional HEAD carrying If-None-Match (etag) and If-Modified-Since
// (lastModified), either of which may be empty. A 304 answer gives
// Info{NotModified: true} with the validators as given and Length -1; any
// other success gives fresh Info as Probe would (NotModified false). HEAD
// fallbacks and retries are as for Probe.
func (c *Client) Validate(ctx context.Context, rawURL string, header http.Header, etag, lastModified string) (Info, error) {
	return c.probe(ctx, "validate", rawURL, header, &conditional{etag: etag, lastModified: lastModified}, false)
}

func (c *Client) probe(ctx context.Context, what, rawURL string, header http.Header, cond *conditional, rangeOnly bool) (Info, error) {
	redacted, err := checkURL(rawURL)
	if err != nil {
		return Info{Length: -1}, fmt.Errorf("%s: %w", what, err)
	}
	log := c.log.WithField("url", redacted)
	var info Info
	bctx, cancel := context.WithTimeout(ctx, c.probeBudget)
	defer cancel()
	err = c.retry(bctx, log, what, func(attempt int) (bool, error) {
		var err error
		if rangeOnly {
			info, err = c.rangeProbe(bctx, rawURL, redacted, header, cond, log.WithField("attempt", attempt))
		} else {
			info, err = c.probeOnce(bctx, rawURL, redacted, header, cond, log.WithField("attempt", attempt))
		}
		return false, err
	})
	if err != nil && ctx.Err() == nil && bctx.Err() != nil {
		err = fmt.Errorf("no answer within %v: %w", c.probeBudget, err)
	}
	if err != nil {
		return Info{Length: -1}, fmt.Errorf("%s %s: %w", what, redacted, err)
	}
	log.WithFields(logrus.Fields{"length": info.Length, "acceptRanges": info.AcceptRanges,
		"notModified": info.NotModified}).Debugf("origin: %s done", what)
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
	log.WithField("status", resp.StatusCode).Debug("origin: HEAD answered")
	switch code := resp.StatusCode; {
	case code == http.StatusNotModified && cond != nil:
		return cond.notModified(), nil
	case code >= 200 && code < 300 && code != http.StatusPartialContent:
		info := infoFromHeader(resp.Header)
		info.Length = resp.ContentLength // for HEAD: the Content-Length header, -1 if absent
		if info.Length >= 0 {
			return info, nil
		}
		log.Debug("origin: HEAD gave no Content-Length; probing with a range GET")
	case code == http.StatusMethodNotAllowed || code == http.StatusNotImplemented || code == http.StatusForbidden:
		// 403: URLs presigned for GET only (S3 and alike) refuse HEAD.
		log.WithField("status", code).Debug("origin: HEAD refused; probing with a range GET")
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
	log.WithField("status", resp.StatusCode).Debug("origin: range GET answered")
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
