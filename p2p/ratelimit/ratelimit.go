// Package ratelimit owns bandwidth limits: parsing rates as users write them
// ("20M", "1.5GB", "800K") and byte-rate limiters that several readers and
// writers share (host-wide limits) or stack (a download's own limit under the
// host's). It knows nothing about pieces or peers.
package ratelimit

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"golang.org/x/time/rate"
)

// Parse turns a rate into bytes per second. Accepted: a plain number of
// bytes, or a number with a unit K, M, G, T (powers of 1024), optionally
// followed by "B", "iB" or "/s": "20M", "20MB", "20MiB/s", "1.5G". "0", "" and
// "unlimited" mean no limit (0).
func Parse(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	if s == "" || s == "0" || s == "UNLIMITED" {
		return 0, nil
	}
	s = strings.TrimSuffix(s, "/S")
	s = strings.TrimSuffix(s, "IB")
	s = strings.TrimSuffix(s, "B")
	mult := 1.0
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("invalid rate %q: want e.g. 20M, 512K or 1.5G (bytes per second)", s)
	}
	return int64(v * mult), nil
}

// Format renders bytes per second for humans.
func Format(bps int64) string {
	if bps <= 0 {
		return "unlimited"
	}
	return HumanBytes(bps) + "/s"
}

// HumanBytes renders a byte count with a binary unit.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// New returns a limiter of bps bytes per second, or nil for no limit. Its
// burst is a fifth of a second of traffic (at least MinBurst), so short
// bursts do not overshoot the rate by much, while a transfer under it waits
// (and wakes) only a few times a second, moving a burst at a time: a
// tenth of a second, capped at 32 KiB writes, cost a peer under a 512 KiB/s
// cap about twice the CPU per byte in wakeups. The long-run rate is bps
// whatever the burst.
func New(bps int64) *rate.Limiter {
	if bps <= 0 {
		return nil
	}
	burst := bps / 5
	if burst < MinBurst {
		burst = MinBurst
	}
	return rate.NewLimiter(rate.Limit(bps), int(burst))
}

// MinBurst is the smallest burst New gives a limiter.
const MinBurst = 64 << 10

// Reader reads from r, waiting on every non-nil limiter for each chunk.
type Reader struct {
	R        io.Reader
	Ctx      context.Context
	Limiters []*rate.Limiter
}

// Read implements io.Reader.
func (l *Reader) Read(p []byte) (int, error) {
	max := len(p)
	for _, lim := range l.Limiters {
		if lim != nil && lim.Burst() < max {
			max = lim.Burst()
		}
	}
	n, err := l.R.Read(p[:max])
	if n > 0 {
		for _, lim := range l.Limiters {
			if lim == nil {
				continue
			}
			if werr := lim.WaitN(l.Ctx, n); werr != nil {
				return n, werr
			}
		}
	}
	return n, err
}

// Limiter is a byte-rate limiter.
type Limiter = rate.Limiter
