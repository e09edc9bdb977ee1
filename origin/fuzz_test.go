package origin

import (
	"fmt"
	"testing"
)

// FuzzParseContentRange: whatever an origin sends as Content-Range, the
// parser never panics and what it accepts is a consistent range that
// reads back the same.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-0/1", "bytes 0-99/100", "bytes */100", "bytes 5-9/*", " bytes 1-2/3 ",
		"bytes 0-9223372036854775807/9223372036854775807", "bytes -1-5/10", "bytes 9-5/10", "bytes 0-10/10", "bytes */*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, total, ok := parseContentRange(s)
		if !ok {
			return
		}
		if start == -1 {
			if end != -1 || total < 0 {
				t.Fatalf("%q: unsatisfied form with %d-%d/%d", s, start, end, total)
			}
			return
		}
		if start < 0 || end < start || (total >= 0 && end >= total) || total < -1 {
			t.Fatalf("%q: accepted an inconsistent range %d-%d/%d", s, start, end, total)
		}
		tot := "*"
		if total >= 0 {
			tot = fmt.Sprint(total)
		}
		s2 := fmt.Sprintf("bytes %d-%d/%s", start, end, tot)
		a, b, c, ok2 := parseContentRange(s2)
		if !ok2 || a != start || b != end || c != total {
			t.Fatalf("%q -> %q does not read back: %d-%d/%d %v", s, s2, a, b, c, ok2)
		}
	})
}
