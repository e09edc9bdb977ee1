package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// SingleConfig configures the single-client overhead scenario.
type SingleConfig struct {
	// FileSize is the size of the file, in bytes.
	FileSize int64 `json:"fileSize"`
	// Curl is the curl binary (default /usr/bin/curl).
	Curl string `json:"curl"`
	// Reps is how many times the curl / cold dfget / warm dfget triple is
	// run (each cold run with a fresh supernode); medians are reported.
	Reps int `json:"reps"`
	// Timeout bounds one download (0: 10 minutes).
	Timeout time.Duration `json:"timeoutNs"`
	// Verify checks the SHA-256 of every output (after timing).
	Verify bool `json:"verify"`
	// Secure runs the supernode and dfget with authentication and mutual
	// TLS (a cluster token and CA-signed certificates, testenv.Trust).
	Secure bool `json:"secure"`
}

// SingleRep is one repetition of the single-client scenario; times in
// seconds, from process start to exit.
type SingleRep struct {
	Curl       float64     `json:"curlSec"`
	Cold       float64     `json:"coldSec"`
	Warm       float64     `json:"warmSec"`
	ColdResult DfgetResult `json:"coldResult"`
	WarmResult DfgetResult `json:"warmResult"`
	// OriginBytes is what the origin served to the cold dfget's supernode.
	OriginBytes int64 `json:"originBytes"`
	// CPU seconds (user+system) per GiB delivered, for the cold and the
	// warm download: seed = the supernode process during the download,
	// peer = the dfget process (0: unknown).
	ColdSeedCPUPerGiB float64 `json:"coldSeedCpuSecPerGiB,omitempty"`
	ColdPeerCPUPerGiB float64 `json:"coldPeerCpuSecPerGiB,omitempty"`
	WarmSeedCPUPerGiB float64 `json:"warmSeedCpuSecPerGiB,omitempty"`
	WarmPeerCPUPerGiB float64 `json:"warmPeerCpuSecPerGiB,omitempty"`
}

// SingleReport is the single-client scenario's result. Curl, Cold and
// Warm are medians over the repetitions, in seconds.
type SingleReport struct {
	Config    SingleConfig `json:"config"`
	Reps      []SingleRep  `json:"reps"`
	Curl      float64      `json:"curlSec"`
	Cold      float64      `json:"coldSec"`
	Warm      float64      `json:"warmSec"`
	RatioCold float64      `json:"ratioCold"`
	RatioWarm float64      `json:"ratioWarm"`
	Targets   []Target     `json:"targets"`
}

// RunSingle measures one dfget against `curl -s -o FILE URL` of the same
// file from a local uncapped origin: curl, then dfget with a cold supernode
// (fresh data dir: the seed fetches from the origin while serving), then a
// second dfget (fresh dfget data dir) against the now warm supernode.
// Outputs go to a directory under env.Root; the page cache is flushed
// (sync) before each download so that one run's write-back does not slow
// the next.
func RunSingle(ctx context.Context, env *Env, cfg SingleConfig) (*SingleReport, error) {
	if cfg.Curl == "" {
		cfg.Curl = "/usr/bin/curl"
	}
	if cfg.Reps <= 0 {
		cfg.Reps = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	rep := &SingleReport{Config: cfg}
	if _, err := os.Stat(cfg.Curl); err != nil {
		return rep, fmt.Errorf("single: curl: %w", err)
	}
	tb, closeScope, err := env.Scope()
	if err != nil {
		return rep, err
	}
	defer closeScope()
	const name = "single.bin"
	var origin *testenv.Origin
	var sum, outDir string
	if err := guard(func() error {
		origin = testenv.NewOrigin(tb)
		env.Logf("single: writing a %s origin file", fmtMiB(cfg.FileSize))
		sum = origin.AddRandom(name, cfg.FileSize, 7)
		outDir = tb.TempDir()
		return nil
	}); err != nil {
		return rep, err
	}
	url := origin.URL(name)
	check := func(path string) error {
		defer os.Remove(path)
		if !cfg.Verify {
			return nil
		}
		return guard(func() error {
			if got := testenv.SHA256File(tb, path); got != sum {
				return fmt.Errorf("%s: sha256 %s, want %s", filepath.Base(path), got[:12], sum[:12])
			}
			return nil
		})
	}
	for i := 0; i < cfg.Reps; i++ {
		var r SingleRep
		// curl
		syscall.Sync()
		out := filepath.Join(outDir, fmt.Sprintf("curl-%d.bin", i))
		cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		start := time.Now()
		cout, err := exec.CommandContext(cctx, cfg.Curl, "-s", "-S", "-f", "-o", out, url).CombinedOutput()
		r.Curl = time.Since(start).Seconds()
		cancel()
		if err != nil {
			return rep, fmt.Errorf("single: curl: %w: %s", err, cout)
		}
		if err := check(out); err != nil {
			return rep, fmt.Errorf("single: curl: %w", err)
		}
		env.Logf("single rep %d: curl %.2fs", i+1, r.Curl)

		// dfget against a cold, then a warm supernode.
		stb, closeSN, err := env.Scope()
		if err != nil {
			return rep, err
		}
		origin.ResetCounters()
		err = guard(func() error {
			var tr *testenv.Trust // nil: plain
			if cfg.Secure {
				tr = testenv.NewTrust(stb, testenv.TrustOptions{ClusterToken: true, TLS: true})
			}
			sn := tr.StartSupernode(stb, env.BinDir, append([]string{"--log-level", "warn"}, testenv.AllowOrigins(origin.Addr())...)...)
			gib := float64(cfg.FileSize) / (1 << 30)
			for _, warm := range []bool{false, true} {
				syscall.Sync()
				out := filepath.Join(outDir, fmt.Sprintf("dfget-%d-%v.bin", i, warm))
				seed0, ok0 := ProcCPUSeconds(sn.Proc.Pid())
				secs, res, peerCPU, err := timeDfget(ctx, stb, tr, env.BinDir, sn.Addr, url, out, cfg.Timeout)
				if err != nil {
					return err
				}
				var seedPerGiB float64
				if seed1, ok1 := ProcCPUSeconds(sn.Proc.Pid()); ok0 && ok1 {
					seedPerGiB = (seed1 - seed0) / gib
				}
				if warm {
					r.WarmSeedCPUPerGiB, r.WarmPeerCPUPerGiB = seedPerGiB, peerCPU/gib
				} else {
					r.ColdSeedCPUPerGiB, r.ColdPeerCPUPerGiB = seedPerGiB, peerCPU/gib
				}
				if err := check(out); err != nil {
					return err
				}
				if warm {
					r.Warm, r.WarmResult = secs, res
				} else {
					r.Cold, r.ColdResult = secs, res
					r.OriginBytes = origin.BytesServed(name)
				}
			}
			return nil
		})
		closeSN()
		if err != nil {
			return rep, fmt.Errorf("single: dfget: %w", err)
		}
		env.Logf("single rep %d: dfget cold %.2fs, warm %.2fs", i+1, r.Cold, r.Warm)
		rep.Reps = append(rep.Reps, r)
	}
	var curl, cold, warm []float64
	for _, r := range rep.Reps {
		curl, cold, warm = append(curl, r.Curl), append(cold, r.Cold), append(warm, r.Warm)
	}
	rep.Curl, rep.Cold, rep.Warm = median(curl), median(cold), median(warm)
	rep.RatioCold, rep.RatioWarm = rep.Cold/rep.Curl, rep.Warm/rep.Curl
	rep.Targets = SingleTargets(rep)
	return rep, nil
}

// timeDfget runs one embedded-peer dfget to completion and returns its wall
// time (start to exit), result line and CPU seconds (user+system).
func timeDfget(ctx context.Context, tb testenv.TB, tr *testenv.Trust, binDir, sn, url, out string, timeout time.Duration) (float64, DfgetResult, float64, error) {
	start := time.Now()
	p := tr.Dfget(tb, binDir, sn, url, out, "--no-daemon", "--log-level", "warn",
		"--timeout", fmt.Sprintf("%ds", int(timeout.Seconds())))
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Kill9()
		return 0, DfgetResult{}, 0, ctx.Err()
	case <-time.After(timeout + 10*time.Second):
		p.Kill9()
		return 0, DfgetResult{}, 0, errors.New("dfget did not finish in time")
	}
	secs := time.Since(start).Seconds()
	code, err := p.Wait(0)
	if err != nil || code != 0 {
		return 0, DfgetResult{}, 0, fmt.Errorf("dfget exit %d (%v): %s", code, err, p.Tail(10))
	}
	res, err := FindDfgetResult(p.Log())
	return secs, res, exitedCPU(p), err
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return percentileSorted(s, 50)
}

// SingleTargets checks dfget against curl: within 1.1x, cold and warm.
func SingleTargets(rep *SingleReport) []Target {
	size := fmtMiB(rep.Config.FileSize)
	cold := AtMost(fmt.Sprintf("dfget (cold supernode) within 1.1x of curl, %s", size), rep.RatioCold, 1.1, "%.2fx")
	cold.Measured = fmt.Sprintf("%.2fx (%.2fs vs %.2fs)", rep.RatioCold, rep.Cold, rep.Curl)
	warm := AtMost(fmt.Sprintf("dfget (warm supernode) within 1.1x of curl, %s", size), rep.RatioWarm, 1.1, "%.2fx")
	warm.Measured = fmt.Sprintf("%.2fx (%.2fs vs %.2fs)", rep.RatioWarm, rep.Warm, rep.Curl)
	return []Target{cold, warm}
}

// SingleTable renders a single-client report as a table.
func SingleTable(rep *SingleReport) *Table {
	t := &Table{Title: fmt.Sprintf("single client (%s file, local uncapped origin, %d rep(s))", fmtMiB(rep.Config.FileSize), len(rep.Reps)),
		Header: []string{"rep", "curl", "dfget cold", "cold/curl", "(in dfget)", "dfget warm", "warm/curl", "(in dfget)",
			"curl MiB/s", "cold MiB/s", "warm MiB/s", "origin (cold)", "CPU s/GiB cold seed/peer", "CPU s/GiB warm seed/peer"}}
	mibs := func(s float64) string { return fmt.Sprintf("%.0f", float64(rep.Config.FileSize)/MiB/s) }
	for i, r := range rep.Reps {
		t.AddRow(i+1, fmtSec(r.Curl), fmtSec(r.Cold), fmtRatio(r.Cold/r.Curl), fmtSec(r.ColdResult.Elapsed.Seconds()),
			fmtSec(r.Warm), fmtRatio(r.Warm/r.Curl), fmtSec(r.WarmResult.Elapsed.Seconds()),
			mibs(r.Curl), mibs(r.Cold), mibs(r.Warm), fmtMiB(r.OriginBytes),
			fmtPerGiB(r.ColdSeedCPUPerGiB, r.ColdPeerCPUPerGiB), fmtPerGiB(r.WarmSeedCPUPerGiB, r.WarmPeerCPUPerGiB))
	}
	if len(rep.Reps) > 1 {
		t.AddRow("median", fmtSec(rep.Curl), fmtSec(rep.Cold), fmtRatio(rep.RatioCold), "", fmtSec(rep.Warm), fmtRatio(rep.RatioWarm), "",
			mibs(rep.Curl), mibs(rep.Cold), mibs(rep.Warm), "", "", "")
	}
	t.Notes = append(t.Notes,
		"times are wall clock from process start to exit; dfget runs an embedded peer (--no-daemon);",
		"(in dfget): dfget's own elapsed_ms, from the start of the download to the output file in place (excludes process start and exit);",
		"CPU s/GiB: user+system seconds per GiB delivered: seed = the supernode process during that download, peer = the dfget process.")
	return t
}
