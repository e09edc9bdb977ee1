package origin

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// infoFromHeader reads validators and range support from response headers.
// Length is left to the caller.
func infoFromHeader(h http.Header) Info {
	info := Info{Length: -1, ETag: h.Get("ETag"), LastModified: h.Get("Last-Modified")}
	for _, v := range h.Values("Accept-Ranges") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "bytes") {
				info.AcceptRanges = true
			}
		}
	}
	return info
}

// parseContentRange parses "bytes first-last/total" and "bytes */total";
// start and end are -1 in the second form and total is -1 when it is "*".
func parseContentRange(s string) (start, end, total int64, ok bool) {
	s = strings.TrimSpace(s)
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(strings.TrimSpace(rest), "/")
	if !found {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || t < 0 {
			return 0, 0, 0, false
		}
		total = t
	}
	if rng == "*" {
		if total < 0 {
			return 0, 0, 0, false
		}
		return -1, -1, total, true
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start || (total >= 0 && end >= total) {
		return 0, 0, 0, false
	}
	return start, end, total, true
}

// strongETag returns etag if it may be used in If-Range (weak validators
// may not), else "".
func strongETag(etag string) string {
	if etag == "" || strings.HasPrefix(etag, "W/") {
		return ""
	}
	return etag
}

// checkValidators returns an ErrChanged error when resp's validators differ
// from the ones the download started with. Missing validators on either side
// are not evidence of a change.
func checkValidators(info Info, h http.Header) error {
	if info.ETag != "" {
		if got := h.Get("ETag"); got != "" && strings.TrimPrefix(got, "W/") != strings.TrimPrefix(info.ETag, "W/") {
			return fmt.Errorf("%w: ETag is now %s, was %s", ErrChanged, got, info.ETag)
		}
		return nil
	}
	if info.LastModified != "" {
		if got := h.Get("Last-Modified"); got != "" && got != info.LastModified {
			return fmt.Errorf("%w: Last-Modified is now %s, was %s", ErrChanged, got, info.LastModified)
		}
	}
	return nil
}
