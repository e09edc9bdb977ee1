package bench

import (
	"fmt"
	"math"
)

// MaxSecureCost is the bound on what authentication and TLS may
// cost: at most 10% of throughput, i.e. a secure/plain time ratio of
// 1/0.9 at most.
const MaxSecureCost = 0.10

// SecureSwarmTable puts a plain and a secure (auth + mutual TLS) swarm
// report side by side: the last peer's completion per N, and their ratio.
func SecureSwarmTable(plain, secure *SwarmReport) *Table {
	t := &Table{Title: "swarm: auth + TLS off / on", Header: []string{"N", "plain", "auth+TLS", "TLS/plain"}}
	for _, p := range plain.Runs {
		for _, s := range secure.Runs {
			if s.N == p.N {
				t.AddRow(p.N, fmtSec(p.Last), fmtSec(s.Last), fmtRatio(timeRatio(s.Last, p.Last, s.Failed+p.Failed)))
			}
		}
	}
	t.Notes = append(t.Notes, "completion of the last peer; TLS/plain above 1 is what authentication and TLS cost")
	return t
}

// SecureSingleTable puts a plain and a secure single-client report side by
// side (medians of the cold and warm dfget times).
func SecureSingleTable(plain, secure *SingleReport) *Table {
	t := &Table{Title: "single client: auth + TLS off / on", Header: []string{"dfget", "plain", "auth+TLS", "TLS/plain"}}
	t.AddRow("cold", fmtSec(plain.Cold), fmtSec(secure.Cold), fmtRatio(timeRatio(secure.Cold, plain.Cold, 0)))
	t.AddRow("warm", fmtSec(plain.Warm), fmtSec(secure.Warm), fmtRatio(timeRatio(secure.Warm, plain.Warm, 0)))
	return t
}

// SecureTargets checks that the secure variant keeps at least 90% of the
// plain throughput: the largest swarm's completion and the warm single
// download (nil reports are left out).
func SecureTargets(swarmPlain, swarmSecure *SwarmReport, singlePlain, singleSecure *SingleReport) []Target {
	bound := 1 / (1 - MaxSecureCost)
	var ts []Target
	if swarmPlain != nil && swarmSecure != nil && len(swarmPlain.Runs) > 0 && len(swarmSecure.Runs) > 0 {
		p, s := swarmPlain.Runs[len(swarmPlain.Runs)-1], swarmSecure.Runs[len(swarmSecure.Runs)-1]
		r := math.NaN()
		if p.N == s.N {
			r = timeRatio(s.Last, p.Last, s.Failed+p.Failed)
		}
		ts = append(ts, AtMost(fmt.Sprintf("swarm N=%d auth+TLS time <= %.2fx plain", p.N, bound), r, bound, "%.2fx"))
	}
	if singlePlain != nil && singleSecure != nil {
		r := timeRatio(singleSecure.Warm, singlePlain.Warm, 0)
		ts = append(ts, AtMost(fmt.Sprintf("single warm auth+TLS time <= %.2fx plain", bound), r, bound, "%.2fx"))
	}
	return ts
}

// timeRatio is secure/plain, NaN when either is missing or a run failed.
func timeRatio(secure, plain float64, failed int) float64 {
	if failed > 0 || secure <= 0 || plain <= 0 {
		return math.NaN()
	}
	return secure / plain
}
