package testenv

import (
	"math"
	"time"
)

// KumarRoss returns the Kumar–Ross (2006) lower bound on the time to
// distribute F bytes from a seed with upload rate us to N peers, each with
// upload rate u and download rate d (rates in bytes per second):
//
//	max(F/us, F/d, N*F/(us+N*u))
//
// d <= 0 means unlimited download (that term is dropped). F <= 0 or N <= 0
// gives 0; us <= 0 (the seed cannot upload) gives the largest Duration, as
// does a bound too large for a Duration. u < 0 is treated as 0.
func KumarRoss(F, us, u, d float64, N int) time.Duration {
	if F <= 0 || N <= 0 {
		return 0
	}
	if us <= 0 {
		return time.Duration(math.MaxInt64)
	}
	u = max(u, 0)
	n := float64(N)
	secs := max(F/us, n*F/(us+n*u))
	if d > 0 {
		secs = max(secs, F/d)
	}
	ns := secs * float64(time.Second)
	if ns >= math.MaxInt64 || math.IsNaN(ns) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(math.Round(ns))
}
