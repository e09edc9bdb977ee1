package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/testenv/anchors"
)

// PeersRow is one measurement of the peers scenario: Clients downloads of
// one Size-byte file started at once.
type PeersRow struct {
	Clients int   `json:"clients"`
	Size    int64 `json:"size"`
}

// Name renders the row as "10 x 64MiB".
func (r PeersRow) Name() string {
	return fmt.Sprintf("%d x %s", r.Clients, fmtSize(r.Size))
}

// DefaultPeersRows are the rows of issue 15: 10 clients at once on 64 MiB
// and 256 MiB, one client on 1 GiB.
var DefaultPeersRows = []PeersRow{{10, 64 * MiB}, {10, 256 * MiB}, {1, 1 << 30}}

// QuickPeersRows are smaller rows for --quick.
var QuickPeersRows = []PeersRow{{10, 16 * MiB}, {10, 64 * MiB}, {1, 256 * MiB}}

// PeersConfig configures the peers scenario.
type PeersConfig struct {
	Rows []PeersRow `json:"rows"`
	// Curl is the curl binary (default /usr/bin/curl).
	Curl string `json:"curl"`
	// Timeout bounds one row of one system (0: 10 minutes).
	Timeout time.Duration `json:"timeoutNs"`
	// BuildTimeout bounds building each anchor (0: 30 minutes).
	BuildTimeout time.Duration `json:"buildTimeoutNs"`
	// AnchorCache is where built anchors are cached ("" : the default).
	AnchorCache string `json:"anchorCache"`
	// Verify checks the SHA-256 of every output (after timing).
	Verify bool `json:"verify"`
}

// System names, in table order.
const (
	SysCurl      = "curl"
	SysDamselfly = "damselfly"
	SysDragonfly = "dragonfly-1.0.6"
	SysKraken    = "kraken-v0.1.4"
)

// PeersCell is one system's result on one row.
type PeersCell struct {
	// Secs is the wall time from starting the first client to the last
	// client's exit; NaN when the measurement failed or was unavailable.
	Secs float64 `json:"secs"`
	// Err says why there is no time ("unavailable: ..." for an anchor
	// that could not be built or started).
	Err string `json:"error,omitempty"`
	// SeedCPU and PeersCPU are CPU seconds (user+system) used during the
	// row by the seed (Damselfly's supernode) and by all the clients
	// together; SeedCPUPerGiB and PeersCPUPerGiB divide them by the GiB
	// delivered (clients x size). Damselfly only.
	SeedCPU        float64 `json:"seedCpuSec,omitempty"`
	PeersCPU       float64 `json:"peersCpuSec,omitempty"`
	SeedCPUPerGiB  float64 `json:"seedCpuSecPerGiB,omitempty"`
	PeersCPUPerGiB float64 `json:"peersCpuSecPerGiB,omitempty"`
}

// ok reports whether the cell holds a time (JSON has no NaN: a missing
// time is -1).
func (c *PeersCell) ok() bool { return c.Err == "" && c.Secs > 0 }

// PeersResult is one row's results.
type PeersResult struct {
	Row   PeersRow             `json:"row"`
	Cells map[string]PeersCell `json:"cells"`
	// Ratios of Damselfly's time to the others' (-1: not measured).
	VsDragonfly float64 `json:"damselflyOverDragonfly"`
	VsCurl      float64 `json:"damselflyOverCurl"`
	VsKraken    float64 `json:"damselflyOverKraken"`
}

// PeersReport is the peers scenario's result.
type PeersReport struct {
	Config PeersConfig `json:"config"`
	// Unavailable maps an anchor that could not be built to why.
	Unavailable map[string]string `json:"unavailable,omitempty"`
	Results     []PeersResult     `json:"results"`
	Targets     []Target          `json:"targets"`
}

// RunPeers runs curl, Damselfly, Dragonfly 1.0.6 and Kraken v0.1.4 side by
// side on 127.0.0.1 against one uncapped origin, row by row: each row
// starts its clients at once and times until the last one exits. Curl is N
// parallel `curl -o` of the origin URL. Damselfly is a fresh supernode
// (cold cache, defaults) and N `dfget --no-daemon`. Dragonfly is a fresh
// supernode + nginx (cold, rate limits removed) and N dfget, each with its
// own home (its own peer server). Kraken is a fresh cluster (testfs, redis,
// origin, tracker, N agents), the file uploaded to its origin beforehand
// (untimed), and N curls of the blob, one from each agent. An anchor that
// cannot be built or started is reported as unavailable and the others
// still run.
func RunPeers(ctx context.Context, env *Env, cfg PeersConfig) (*PeersReport, error) {
	if len(cfg.Rows) == 0 {
		cfg.Rows = DefaultPeersRows
	}
	if cfg.Curl == "" {
		cfg.Curl = "/usr/bin/curl"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.BuildTimeout <= 0 {
		cfg.BuildTimeout = 30 * time.Minute
	}
	rep := &PeersReport{Config: cfg, Unavailable: map[string]string{}}
	if _, err := os.Stat(cfg.Curl); err != nil {
		return rep, fmt.Errorf("peers: curl: %w", err)
	}

	// Anchors: build (or find cached) first, so that a build does not
	// overlap a measurement.
	bins := map[string]string{}
	for sys, a := range map[string]anchors.Anchor{SysDragonfly: anchors.Dragonfly, SysKraken: anchors.Kraken} {
		env.Logf("peers: building %s %s (cached after the first time)", a.Name, a.Version)
		bctx, cancel := context.WithTimeout(ctx, cfg.BuildTimeout)
		dir, err := anchors.Build(bctx, a, anchors.BuildOptions{CacheDir: cfg.AnchorCache, Nice: true, Log: env.Log})
		cancel()
		if err != nil {
			rep.Unavailable[sys] = err.Error()
			env.Logf("peers: %s unavailable: %v", sys, err)
			continue
		}
		bins[sys] = dir
	}
	if _, err := anchors.Nginx(); err != nil {
		for _, sys := range []string{SysDragonfly, SysKraken} {
			if rep.Unavailable[sys] == "" {
				rep.Unavailable[sys] = err.Error()
			}
		}
	}
	if _, err := anchors.RedisServer(); err != nil && rep.Unavailable[SysKraken] == "" {
		rep.Unavailable[SysKraken] = err.Error()
	}

	tb, closeScope, err := env.Scope()
	if err != nil {
		return rep, err
	}
	defer closeScope()
	var origin *testenv.Origin
	files := map[int64]peersFile{}
	if err := guard(func() error {
		origin = testenv.NewOrigin(tb)
		for i, r := range cfg.Rows {
			if _, ok := files[r.Size]; ok {
				continue
			}
			name := fmt.Sprintf("peers-%d.bin", r.Size)
			env.Logf("peers: writing a %s origin file", fmtMiB(r.Size))
			sum := origin.AddRandom(name, r.Size, int64(100+i))
			files[r.Size] = peersFile{name: name, sum: sum, path: filepath.Join(tb.TempDir(), name)}
		}
		return nil
	}); err != nil {
		return rep, err
	}

	for _, row := range cfg.Rows {
		f := files[row.Size]
		res := PeersResult{Row: row, Cells: map[string]PeersCell{}}
		for _, sys := range []string{SysCurl, SysDamselfly, SysDragonfly, SysKraken} {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			if why := rep.Unavailable[sys]; why != "" {
				res.Cells[sys] = PeersCell{Secs: -1, Err: "unavailable: " + why}
				continue
			}
			env.Logf("peers: %s: %s", row.Name(), sys)
			cell := runPeersCell(ctx, env, cfg, sys, bins[sys], origin, f, row)
			if cell.Err != "" {
				env.Logf("peers: %s: %s failed: %s", row.Name(), sys, cell.Err)
			} else {
				env.Logf("peers: %s: %s %.2fs", row.Name(), sys, cell.Secs)
			}
			res.Cells[sys] = cell
		}
		res.VsDragonfly = peersRatio(res.Cells[SysDamselfly], res.Cells[SysDragonfly])
		res.VsCurl = peersRatio(res.Cells[SysDamselfly], res.Cells[SysCurl])
		res.VsKraken = peersRatio(res.Cells[SysDamselfly], res.Cells[SysKraken])
		rep.Results = append(rep.Results, res)
	}
	rep.Targets = PeersTargets(rep)
	return rep, nil
}

type peersFile struct {
	name, sum string
	// path is where Kraken's upload copy goes.
	path string
}

// peersRatio is a/b, or -1 when either is missing.
func peersRatio(a, b PeersCell) float64 {
	if !a.ok() || !b.ok() {
		return -1
	}
	return a.Secs / b.Secs
}

// runPeersCell measures one system on one row in a scope of its own.
func runPeersCell(ctx context.Context, env *Env, cfg PeersConfig, sys, binDir string, origin *testenv.Origin, f peersFile, row PeersRow) PeersCell {
	stb, closeScope, err := env.Scope()
	if err != nil {
		return PeersCell{Secs: -1, Err: err.Error()}
	}
	defer closeScope()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var cell PeersCell
	err = guard(func() error {
		outDir := stb.TempDir()
		outs := make([]string, row.Clients)
		for i := range outs {
			outs[i] = filepath.Join(outDir, fmt.Sprintf("%s-%d.bin", sys, i))
		}
		url := origin.URL(f.name)
		procs := make([]*testenv.Proc, row.Clients)
		started := func(i int, p *testenv.Proc) (*testenv.Proc, error) { procs[i] = p; return p, nil }
		var secs float64
		var err error
		switch sys {
		case SysCurl:
			secs, err = timeClients(ctx, row.Clients, func(i int) (*testenv.Proc, error) {
				return started(i, testenv.Start(stb, "", cfg.Curl, "-s", "-S", "-f", "-o", outs[i], url))
			}, nil)
		case SysDamselfly:
			sn := testenv.StartSupernode(stb, env.BinDir, append([]string{"--log-level", "warn"}, testenv.AllowOrigins(origin.Addr())...)...)
			seed0, _ := ProcCPUSeconds(sn.Proc.Pid())
			var peersCPU float64
			secs, err = timeClients(ctx, row.Clients, func(i int) (*testenv.Proc, error) {
				return started(i, testenv.Dfget(stb, env.BinDir, sn.Addr, url, outs[i], "--no-daemon", "--log-level", "warn",
					"--timeout", fmt.Sprintf("%ds", int(cfg.Timeout.Seconds()))))
			}, func(p *testenv.Proc) { peersCPU += exitedCPU(p) })
			seed1, ok := ProcCPUSeconds(sn.Proc.Pid())
			gib := float64(row.Clients) * float64(row.Size) / (1 << 30)
			if ok {
				cell.SeedCPU = seed1 - seed0
				cell.SeedCPUPerGiB = cell.SeedCPU / gib
			}
			cell.PeersCPU, cell.PeersCPUPerGiB = peersCPU, peersCPU/gib
		case SysDragonfly:
			d, derr := anchors.StartDragonfly(ctx, stb, binDir)
			if derr != nil {
				return fmt.Errorf("unavailable: start: %w", derr)
			}
			defer d.Stop()
			secs, err = timeClients(ctx, row.Clients, func(i int) (*testenv.Proc, error) {
				return started(i, d.Dfget(stb, url, outs[i]))
			}, nil)
		case SysKraken:
			k, kerr := anchors.StartKraken(ctx, stb, binDir, row.Clients)
			if kerr != nil {
				return fmt.Errorf("unavailable: start: %w", kerr)
			}
			defer k.Stop()
			if err := fetchOrigin(ctx, cfg.Curl, url, f.path); err != nil {
				return err
			}
			uerr := k.Upload(ctx, f.path, f.sum)
			os.Remove(f.path)
			if uerr != nil {
				return uerr
			}
			secs, err = timeClients(ctx, row.Clients, func(i int) (*testenv.Proc, error) {
				return started(i, testenv.Start(stb, "", cfg.Curl, "-s", "-S", "-f", "-o", outs[i], k.BlobURL(i, f.sum)))
			}, nil)
		}
		if err != nil {
			return err
		}
		for i, out := range outs {
			// A client may exit 0 without its output (Dragonfly's dfget
			// does on some failures): say what its log says.
			if _, err := os.Stat(out); err != nil {
				return fmt.Errorf("client %d exited 0 without its output: %w; log: %s", i, err, procs[i].Tail(6))
			}
			if cfg.Verify {
				if got := testenv.SHA256File(stb, out); got != f.sum {
					return fmt.Errorf("%s: sha256 %.12s, want %.12s", filepath.Base(out), got, f.sum)
				}
			}
			os.Remove(out)
		}
		cell.Secs = secs
		return nil
	})
	if err != nil {
		return PeersCell{Secs: -1, Err: err.Error()}
	}
	return cell
}

// fetchOrigin copies the origin file to path (Kraken's upload source).
func fetchOrigin(ctx context.Context, curl, url, path string) error {
	out, err := exec.CommandContext(ctx, curl, "-s", "-S", "-f", "-o", path, url).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fetch %s for upload: %w: %s", url, err, out)
	}
	return nil
}

// exitedCPU is the user+system CPU time of an exited process.
func exitedCPU(p *testenv.Proc) float64 {
	st := p.Cmd.ProcessState
	if st == nil {
		return 0
	}
	return (st.UserTime() + st.SystemTime()).Seconds()
}

// timeClients flushes dirty pages, starts n clients at once and returns the
// wall time until the last one exited; each must exit 0. done, if set, is
// called for each exited client (from this goroutine).
func timeClients(ctx context.Context, n int, start func(i int) (*testenv.Proc, error), done func(*testenv.Proc)) (float64, error) {
	syscall.Sync()
	ps := make([]*testenv.Proc, n)
	t0 := time.Now()
	for i := range ps {
		p, err := start(i)
		if err != nil {
			return 0, err
		}
		ps[i] = p
	}
	var mu sync.Mutex
	var last time.Time
	var errs []error
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-p.Done():
			case <-ctx.Done():
				p.Kill9()
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", p.Name, ctx.Err()))
				mu.Unlock()
				return
			}
			end := time.Now()
			code, err := p.Wait(0)
			mu.Lock()
			defer mu.Unlock()
			if end.After(last) {
				last = end
			}
			if err != nil || code != 0 {
				errs = append(errs, fmt.Errorf("%s exit %d (%v): %s", filepath.Base(p.Name), code, err, p.Tail(8)))
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	if done != nil {
		for _, p := range ps {
			done(p)
		}
	}
	return last.Sub(t0).Seconds(), nil
}

// PeersTargets checks issue 15's targets: on 10 clients x 64 MiB, Damselfly
// at most 1/3 of Dragonfly 1.0.6's time and at most 2x ten parallel curls;
// Damselfly faster than Kraken on every row.
func PeersTargets(rep *PeersReport) []Target {
	var ts []Target
	ratio := func(name string, r float64, want float64, strict bool, why string) Target {
		v := r
		if r < 0 {
			v = math.NaN()
		}
		t := AtMost(name, v, want, "%.2f")
		if strict && !math.IsNaN(v) && v >= want {
			t.Met = false
		}
		if math.IsNaN(v) {
			t.Measured = "-"
			t.Note = why
		}
		return t
	}
	for _, res := range rep.Results {
		why := func(sys string) string {
			for _, s := range []string{SysDamselfly, sys} {
				if c := res.Cells[s]; !c.ok() {
					return s + ": " + c.Err
				}
			}
			return ""
		}
		if res.Row.Clients == 10 && res.Row.Size == 64*MiB {
			ts = append(ts,
				ratio("peers 10 x 64MiB: Damselfly/Dragonfly 1.0.6 <= 0.33", res.VsDragonfly, 1.0/3, false, why(SysDragonfly)),
				ratio("peers 10 x 64MiB: Damselfly/ten parallel curls <= 2", res.VsCurl, 2, false, why(SysCurl)))
		}
		ts = append(ts, ratio(fmt.Sprintf("peers %s: Damselfly faster than Kraken (ratio < 1)", res.Row.Name()),
			res.VsKraken, 1, true, why(SysKraken)))
	}
	return ts
}

// PeersTable renders the peers report.
func PeersTable(rep *PeersReport) *Table {
	t := &Table{Title: "peers (side by side on 127.0.0.1, uncapped origin, cold supernodes)",
		Header: []string{"row", "curl", "Damselfly", "Dragonfly 1.0.6", "Kraken v0.1.4",
			"D/Dragonfly", "D/curl", "D/Kraken", "seed CPU s/GiB", "peers CPU s/GiB"}}
	cell := func(c PeersCell) string {
		if !c.ok() {
			if strings.HasPrefix(c.Err, "unavailable") {
				return "unavailable"
			}
			return "failed"
		}
		return fmtSec(c.Secs)
	}
	r := func(v float64) string {
		if v < 0 {
			return "-"
		}
		return fmtRatio(v)
	}
	notes := map[string]bool{}
	for _, res := range rep.Results {
		d := res.Cells[SysDamselfly]
		seed, peers := "-", "-"
		if d.ok() {
			seed, peers = fmt.Sprintf("%.2f", d.SeedCPUPerGiB), fmt.Sprintf("%.2f", d.PeersCPUPerGiB)
		}
		t.AddRow(res.Row.Name(), cell(res.Cells[SysCurl]), cell(d), cell(res.Cells[SysDragonfly]), cell(res.Cells[SysKraken]),
			r(res.VsDragonfly), r(res.VsCurl), r(res.VsKraken), seed, peers)
		for _, sys := range []string{SysCurl, SysDamselfly, SysDragonfly, SysKraken} {
			if c := res.Cells[sys]; c.Err != "" {
				n := fmt.Sprintf("%s %s: %s", res.Row.Name(), sys, firstLine(c.Err, 300))
				if !notes[n] {
					notes[n] = true
					t.Notes = append(t.Notes, n)
				}
			}
		}
	}
	t.Notes = append(t.Notes,
		"times: wall clock from starting the first client to the last client's exit; every output's sha256 checked;",
		"curl: N parallel curls of the origin; Damselfly: fresh supernode (defaults) + N dfget --no-daemon;",
		"Dragonfly: fresh supernode + nginx download port, linkLimit/maxBandwidth/locallimit/totallimit lifted, N dfget (own home each);",
		"Kraken: fresh testfs+redis+origin+tracker+N agents, blob uploaded to the origin first (untimed), one curl per agent;",
		"CPU s/GiB: Damselfly only, user+system seconds over the row per GiB delivered (clients x size): seed = supernode process, peers = all dfget processes.")
	return t
}

// firstLine returns s up to its first newline, at most n bytes.
func firstLine(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// fmtSize renders a byte count as MiB or GiB.
func fmtSize(b int64) string {
	if b >= 1<<30 && b%(1<<30) == 0 {
		return fmt.Sprintf("%dGiB", b>>30)
	}
	return fmt.Sprintf("%dMiB", b/MiB)
}
