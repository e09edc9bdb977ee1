package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// Peer modes of the swarm scenario: how each simulated host runs its peer.
const (
	// ModeAuto picks ModeDfget when dfget has --upload-limit, else ModeDaemon.
	ModeAuto = "auto"
	// ModeDfget runs one dfget per host with an embedded peer, capped with
	// --totallimit (download) and --upload-limit (upload).
	ModeDfget = "dfget"
	// ModeDaemon runs one dfdaemon per host, capped with --upload-limit and
	// --download-limit, and one dfget per host talking to it (--daemon-sock).
	ModeDaemon = "daemon"
)

// SwarmConfig configures the swarm-scaling scenario.
type SwarmConfig struct {
	// Sizes are the swarm sizes N to measure, in order.
	Sizes []int `json:"sizes"`
	// FileSize is F, in bytes.
	FileSize int64 `json:"fileSize"`
	// OriginCap is u_s, the origin's upload cap in bytes/s.
	OriginCap int64 `json:"originCap"`
	// Upload and Download are u and d, every peer's caps in bytes/s.
	Upload   int64 `json:"upload"`
	Download int64 `json:"download"`
	// DirectMaxN: for N <= DirectMaxN, N plain HTTP GETs of the file from
	// the capped origin are timed too (each client capped at Download).
	DirectMaxN int `json:"directMaxN"`
	// Mode is ModeAuto, ModeDfget or ModeDaemon.
	Mode string `json:"mode"`
	// KeepSeeding (ModeDfget) makes every dfget keep uploading after its
	// download (--keep-seeding) until the whole swarm is done, as a host's
	// dfdaemon would; a peer's completion is then the moment its result line
	// appears, not its exit. Without it, a peer leaves the swarm as soon as
	// it has the file.
	KeepSeeding bool `json:"keepSeeding"`
	// PeerArgs are extra flags for each host's peer process: dfget in
	// ModeDfget, dfdaemon in ModeDaemon (e.g. --concurrency 1).
	PeerArgs []string `json:"peerArgs,omitempty"`
	// SupernodeArgs are extra flags for the supernode.
	SupernodeArgs []string `json:"supernodeArgs,omitempty"`
	// Timeout bounds one N (0: 3 minutes or 10 T_min, whichever is longer).
	Timeout time.Duration `json:"timeoutNs"`
	// Verify checks every output file's SHA-256 after the run.
	Verify bool `json:"verify"`
	// Secure runs the cluster with authentication and mutual TLS: a
	// cluster token and a CA-signed certificate for every process
	// (testenv.Trust).
	Secure bool `json:"secure"`
}

// SwarmRun is the measurement of one swarm size.
type SwarmRun struct {
	N    int    `json:"n"`
	Mode string `json:"mode"`
	// TMin is the Kumar–Ross bound, in seconds.
	TMin float64 `json:"tMinSec"`
	// ClientServer is N*F/u_s: the time the origin alone needs, in seconds.
	ClientServer float64 `json:"clientServerSec"`
	// Last is the completion of the last peer, from just before the first
	// peer was started, in seconds (NaN-free: 0 when no peer completed).
	Last float64 `json:"lastSec"`
	// Ratio is TMin/Last (0 when no peer completed).
	Ratio float64 `json:"ratio"`
	// PerPeer summarizes each peer's completion time, from its own start.
	PerPeer Summary `json:"perPeer"`
	// FinishLag summarizes, per peer (dfget mode), the time from its store
	// first being seen complete to its completion (result line), in seconds:
	// what dfget spends after the last piece (final sync, output file,
	// waiting for its goroutines). Sampled every 250 ms, so +-0.25 s.
	FinishLag Summary `json:"finishLag"`
	// PeerSeconds are the per-peer completion times, in start order (-1
	// for a peer that did not complete).
	PeerSeconds []float64 `json:"peerSec"`
	// CPUBusy is the fraction of the machine's CPU time that was busy
	// from the first start to the last completion (-1: unknown); near 1
	// means the run measured the machine rather than the product.
	CPUBusy float64 `json:"cpuBusy"`
	// CPU seconds used during the run by the supernode and by all peer
	// processes together (dfget, and dfdaemon in daemon mode), read just
	// before they are stopped (0: unknown); a peer that already exited
	// counts with its final usage.
	SupernodeCPU float64 `json:"supernodeCpuSec"`
	PeersCPU     float64 `json:"peersCpuSec"`
	// SeedCPUPerGiB and PeersCPUPerGiB divide SupernodeCPU and PeersCPU by
	// the GiB delivered (completed peers x F); 0 when nothing completed.
	SeedCPUPerGiB  float64 `json:"seedCpuSecPerGiB,omitempty"`
	PeersCPUPerGiB float64 `json:"peersCpuSecPerGiB,omitempty"`
	// BenchCPU is what dfbench itself (origin server, log polling) used.
	BenchCPU float64 `json:"benchCpuSec"`
	// MachineCPU is the busy CPU time of the whole machine during the run;
	// OtherCPU is what neither the swarm nor dfbench used (other work on
	// the machine disturbing the measurement; approximate).
	MachineCPU float64 `json:"machineCpuSec"`
	OtherCPU   float64 `json:"otherCpuSec"`
	// StartSpread is how long starting all N dfget processes took, in seconds.
	StartSpread float64 `json:"startSpreadSec"`
	// OriginBytes is what the origin served during the P2P run; OriginLimit
	// is F plus one piece.
	OriginBytes int64 `json:"originBytes"`
	OriginLimit int64 `json:"originLimit"`
	// SeedServed is what the supernode's seed uploaded to peers.
	SeedServed int64 `json:"seedServed"`
	// FromPeers, FromSeed, FromOrigin and Reused sum the peers' result lines.
	FromPeers  int64 `json:"fromPeers"`
	FromSeed   int64 `json:"fromSeed"`
	FromOrigin int64 `json:"fromOrigin"`
	Reused     int64 `json:"reused"`
	// BackToSource counts peers that went to the origin themselves.
	BackToSource int `json:"backToSource"`
	// Failed counts peers that did not complete (error, timeout, wrong
	// bytes); Errors holds the first few reasons.
	Failed int      `json:"failed"`
	Errors []string `json:"errors,omitempty"`
	// Progress samples the pieces all peers hold over the run (every
	// 500 ms), from their stores on disk.
	Progress []ProgressPoint `json:"progress,omitempty"`
	// NumPieces is the file's piece count.
	NumPieces int `json:"numPieces"`
	// Direct is the completion of the last of N plain HTTP GETs from the
	// capped origin, in seconds; nil when not measured. DirectPerClient
	// are the clients' times.
	Direct          *float64  `json:"directSec,omitempty"`
	DirectPerClient []float64 `json:"directPerClientSec,omitempty"`
}

// SwarmReport is the swarm scenario's result.
type SwarmReport struct {
	Config    SwarmConfig `json:"config"`
	Mode      string      `json:"mode"`
	PieceSize int64       `json:"pieceSize"`
	Runs      []SwarmRun  `json:"runs"`
	Targets   []Target    `json:"targets"`
}

// completionPoll is how often peer logs are checked for the result line.
const completionPoll = 50 * time.Millisecond

// RunSwarm measures swarm scaling: for each N, a fresh supernode and N
// simultaneous downloads of one F-byte file from an origin capped at u_s.
// An N whose run fails is recorded with its error and the next N still
// runs; the error returned is the first failure, if any. Everything a run
// starts is torn down before the next N.
func RunSwarm(ctx context.Context, env *Env, cfg SwarmConfig) (*SwarmReport, error) {
	rep := &SwarmReport{Config: cfg, PieceSize: manifest.PieceSizeFor(cfg.FileSize)}
	mode := cfg.Mode
	if mode == "" || mode == ModeAuto {
		ok, err := DfgetHasUploadLimit(ctx, env.BinDir)
		if err != nil {
			return rep, err
		}
		mode = ModeDaemon
		if ok {
			mode = ModeDfget
		}
	}
	if mode != ModeDfget && mode != ModeDaemon {
		return rep, fmt.Errorf("swarm: unknown mode %q", cfg.Mode)
	}
	rep.Mode = mode
	env.Logf("swarm: peers run as %s; F=%s u_s=%s/s u=%s/s d=%s/s N=%v",
		mode, fmtMiB(cfg.FileSize), fmtMiB(cfg.OriginCap), fmtMiB(cfg.Upload), fmtMiB(cfg.Download), cfg.Sizes)

	otb, closeOrigin, err := env.Scope()
	if err != nil {
		return rep, err
	}
	defer closeOrigin()
	var origin *testenv.Origin
	var sum string
	const name = "swarm.bin"
	if err := guard(func() error {
		origin = testenv.NewOrigin(otb, testenv.WithUploadCap(cfg.OriginCap))
		sum = origin.AddRandom(name, cfg.FileSize, 42)
		return nil
	}); err != nil {
		return rep, err
	}

	var firstErr error
	for _, n := range cfg.Sizes {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		run, err := runSwarmN(ctx, env, cfg, mode, origin, name, sum, n)
		if err != nil {
			run.Errors = append(run.Errors, err.Error())
			if firstErr == nil {
				firstErr = fmt.Errorf("swarm N=%d: %w", n, err)
			}
		}
		if n <= cfg.DirectMaxN && ctx.Err() == nil {
			env.Logf("swarm N=%d: %d direct HTTP GETs from the capped origin", n, n)
			per, last, derr := DirectDownload(ctx, origin.URL(name), n, cfg.Download, swarmTimeout(cfg, n))
			if derr != nil {
				run.Errors = append(run.Errors, "direct: "+derr.Error())
			} else {
				run.Direct, run.DirectPerClient = &last, per
			}
		}
		rep.Runs = append(rep.Runs, run)
		env.Logf("swarm N=%d: last %.2fs (bound %.2fs, ratio %.2f), p50 %.2fs, origin %s, failed %d",
			n, run.Last, run.TMin, run.Ratio, run.PerPeer.P50, fmtMiB(run.OriginBytes), run.Failed)
	}
	rep.Targets = SwarmTargets(rep)
	return rep, firstErr
}

// swarmTimeout bounds one N.
func swarmTimeout(cfg SwarmConfig, n int) time.Duration {
	if cfg.Timeout > 0 {
		return cfg.Timeout
	}
	tmin := testenv.KumarRoss(float64(cfg.FileSize), float64(cfg.OriginCap), float64(cfg.Upload), float64(cfg.Download), n)
	cs := time.Duration(float64(n) * float64(cfg.FileSize) / float64(max(cfg.OriginCap, 1)) * float64(time.Second))
	return max(3*time.Minute, 10*tmin, 2*min(cs, time.Hour))
}

// swarmPeer is one host of a swarm run.
type swarmPeer struct {
	proc  *testenv.Proc
	out   string
	start time.Time
	done  time.Time // zero until complete
	res   DfgetResult
	err   error

	off  int64  // log bytes already scanned
	tail []byte // unterminated last line of the scanned part
}

func runSwarmN(ctx context.Context, env *Env, cfg SwarmConfig, mode string, origin *testenv.Origin, name, sum string, n int) (SwarmRun, error) {
	F := float64(cfg.FileSize)
	run := SwarmRun{N: n, Mode: mode,
		TMin:         testenv.KumarRoss(F, float64(cfg.OriginCap), float64(cfg.Upload), float64(cfg.Download), n).Seconds(),
		ClientServer: float64(n) * F / float64(cfg.OriginCap),
		OriginLimit:  cfg.FileSize + manifest.PieceSizeFor(cfg.FileSize)}
	timeout := swarmTimeout(cfg, n)
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	tb, closeScope, err := env.Scope()
	if err != nil {
		return run, err
	}
	defer closeScope()
	origin.ResetCounters()
	var peers []*swarmPeer
	var sn *testenv.Supernode
	var t0 time.Time
	var cpu0 CPUTimes
	var cpuOK bool
	var self0 float64
	var daemons []*testenv.Daemon
	var dataDirs []string
	err = guard(func() error {
		var tr *testenv.Trust // nil: plain
		if cfg.Secure {
			tr = testenv.NewTrust(tb, testenv.TrustOptions{ClusterToken: true, TLS: true})
		}
		sn = tr.StartSupernode(tb, env.BinDir, append(append([]string{"--log-level", "warn"}, testenv.AllowOrigins(origin.Addr())...), cfg.SupernodeArgs...)...)
		outDir := tb.TempDir()
		secs := strconv.Itoa(int(timeout.Seconds()) + 30)
		common := []string{"--log-level", "warn", "--timeout", secs}
		if mode == ModeDaemon {
			env.Logf("swarm N=%d: starting %d dfdaemons", n, n)
			for i := 0; i < n; i++ {
				d := tr.StartDaemon(tb, env.BinDir, sn.Addr, append([]string{"--log-level", "warn",
					"--upload-limit", strconv.FormatInt(cfg.Upload, 10),
					"--download-limit", strconv.FormatInt(cfg.Download, 10)}, cfg.PeerArgs...)...)
				daemons = append(daemons, d)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
		env.Logf("swarm N=%d: starting %d downloads (timeout %v)", n, n, timeout)
		cpu0, cpuOK = ReadCPUTimes()
		self0 = SelfCPUSeconds()
		t0 = time.Now()
		for i := 0; i < n; i++ {
			args := append([]string(nil), common...)
			if mode == ModeDaemon {
				args = append(args, "--daemon-sock", daemons[i].Sock)
			} else {
				args = append(args, "--no-daemon",
					"--totallimit", strconv.FormatInt(cfg.Download, 10),
					"--upload-limit", strconv.FormatInt(cfg.Upload, 10))
				if cfg.KeepSeeding {
					args = append(args, "--keep-seeding", secs)
				}
				args = append(args, cfg.PeerArgs...)
			}
			out := filepath.Join(outDir, fmt.Sprintf("peer%03d.bin", i))
			if mode == ModeDaemon {
				dataDirs = append(dataDirs, daemons[i].DataDir)
			} else {
				dd := tb.TempDir()
				dataDirs = append(dataDirs, dd)
				args = append(args, "--data-dir", dd)
			}
			start := time.Now()
			p := tr.Dfget(tb, env.BinDir, sn.Addr, origin.URL(name), out, args...)
			peers = append(peers, &swarmPeer{proc: p, out: out, start: start})
		}
		run.StartSpread = time.Since(t0).Seconds()
		return nil
	})
	if err != nil {
		return run, err
	}
	watchLog := mode == ModeDfget && cfg.KeepSeeding
	run.NumPieces = manifest.NewLayout(cfg.FileSize).NumPieces()
	pctx, stopProgress := context.WithCancel(ctx)
	var full []time.Time
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		run.Progress, full = sampleProgress(pctx, t0, dataDirs, run.NumPieces)
	}()
	waitSwarm(ctx, peers, watchLog)
	stopProgress()
	<-sampled
	run.BenchCPU = SelfCPUSeconds() - self0
	run.CPUBusy = -1
	cpu1, cpu1OK := ReadCPUTimes()
	if cpu1OK && cpuOK {
		run.CPUBusy = Utilization(cpu0, cpu1)
		run.MachineCPU = BusySeconds(cpu0, cpu1)
	}
	if ctx.Err() != nil {
		why := fmt.Errorf("not done after %v", timeout)
		if parent.Err() != nil {
			why = fmt.Errorf("interrupted: %v", context.Cause(parent))
		}
		for _, p := range peers {
			if p.done.IsZero() && p.err == nil {
				p.err = why
			}
		}
	}
	run.OriginBytes = origin.BytesServed(name)
	if err := guard(func() error {
		if task := sn.Status(tb).Task(origin.URL(name)); task != nil {
			run.SeedServed = task.BytesServed
		}
		return nil
	}); err != nil {
		env.Logf("swarm N=%d: supernode status: %v", n, err)
	}
	if c, ok := ProcCPUSeconds(sn.Proc.Pid()); ok {
		run.SupernodeCPU = c
	}
	for _, p := range peers {
		if p.proc.Exited() {
			run.PeersCPU += exitedCPU(p.proc)
		} else if c, ok := ProcCPUSeconds(p.proc.Pid()); ok {
			run.PeersCPU += c
		}
	}
	for _, d := range daemons {
		if c, ok := ProcCPUSeconds(d.Proc.Pid()); ok {
			run.PeersCPU += c
		}
	}
	if run.MachineCPU > 0 {
		run.OtherCPU = max(0, run.MachineCPU-run.SupernodeCPU-run.PeersCPU-run.BenchCPU)
	}
	// Stop the swarm before verifying, so that hashing does not compete
	// with anything.
	for _, p := range peers {
		p.proc.Kill9()
	}
	var times, lags []float64
	var last time.Duration
	for i, p := range peers {
		if p.err == nil && cfg.Verify {
			if err := guard(func() error {
				if got := testenv.SHA256File(tb, p.out); got != sum {
					return fmt.Errorf("output sha256 %s, want %s", got[:12], sum[:12])
				}
				return nil
			}); err != nil {
				p.err = err
			}
		}
		if p.err != nil {
			run.Failed++
			if len(run.Errors) < 5 {
				run.Errors = append(run.Errors, fmt.Sprintf("%s (pid %d): %v", filepath.Base(p.out), p.proc.Pid(), p.err))
			}
			run.PeerSeconds = append(run.PeerSeconds, -1)
			continue
		}
		d := p.done.Sub(p.start)
		times = append(times, d.Seconds())
		if i < len(full) && !full[i].IsZero() && mode == ModeDfget {
			lags = append(lags, max(0, p.done.Sub(full[i]).Seconds()))
		}
		run.PeerSeconds = append(run.PeerSeconds, d.Seconds())
		last = max(last, p.done.Sub(t0))
		run.FromPeers += p.res.Peers
		run.FromSeed += p.res.Seed
		run.FromOrigin += p.res.Origin
		run.Reused += p.res.Reused
		if p.res.BackToSource {
			run.BackToSource++
		}
	}
	run.PerPeer = Summarize(times)
	run.FinishLag = Summarize(lags)
	if gib := float64(len(times)) * F / (1 << 30); gib > 0 {
		run.SeedCPUPerGiB, run.PeersCPUPerGiB = run.SupernodeCPU/gib, run.PeersCPU/gib
	}
	if run.Failed == 0 && len(times) > 0 {
		run.Last = last.Seconds()
		run.Ratio = run.TMin / run.Last
	}
	if run.Failed > 0 {
		return run, fmt.Errorf("%d of %d peers failed: %s", run.Failed, n, strings.Join(run.Errors, "; "))
	}
	return run, nil
}

// waitSwarm waits until every peer completed or failed, or ctx ends. A
// peer completes when its process exits 0 with a result line or, with
// watchLog, as soon as the result line appears in its log (the process
// goes on seeding).
func waitSwarm(ctx context.Context, peers []*swarmPeer, watchLog bool) {
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			waitPeer(ctx, p, watchLog)
		}()
	}
	wg.Wait()
}

func waitPeer(ctx context.Context, p *swarmPeer, watchLog bool) {
	var tick <-chan time.Time
	if watchLog {
		t := time.NewTicker(completionPoll)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.proc.Done():
			now := time.Now()
			code, err := p.proc.Wait(0)
			if watchLog && p.scanLog() {
				return // the result line made it in before the exit
			}
			switch {
			case err != nil:
				p.err = err
			case code != 0:
				p.err = fmt.Errorf("exit code %d: %s", code, lastLine(p.proc.Tail(5)))
			default:
				p.res, p.err = FindDfgetResult(p.proc.Log())
				p.done = now
			}
			return
		case <-tick:
			if p.scanLog() {
				return
			}
		}
	}
}

// scanLog reads what the peer's log gained since the last call and, if a
// complete result line is there, records the completion and reports true.
func (p *swarmPeer) scanLog() bool {
	f, err := os.Open(p.proc.LogPath)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() <= p.off {
		return false
	}
	now := time.Now()
	buf := make([]byte, fi.Size()-p.off)
	n, _ := f.ReadAt(buf, p.off)
	buf = buf[:n]
	p.off += int64(n)
	data := append(p.tail, buf...)
	end := strings.LastIndexByte(string(data), '\n')
	if end < 0 {
		p.tail = data
		return false
	}
	p.tail = append([]byte(nil), data[end+1:]...)
	complete := string(data[:end+1])
	if !strings.Contains(complete, ResultPrefix) {
		return false
	}
	p.res, p.err = FindDfgetResult(complete)
	p.done = now
	return true
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// DirectDownload runs n concurrent plain HTTP GETs of url (each client's
// reads capped at perClient bytes/s when > 0, as a peer's download is) and
// returns each client's completion time and the last one, in seconds.
func DirectDownload(ctx context.Context, url string, n int, perClient int64, timeout time.Duration) ([]float64, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: n}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	times := make([]float64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = getOnce(ctx, client, url, perClient)
			times[i] = time.Since(start).Seconds()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	last := 0.0
	for _, t := range times {
		last = math.Max(last, t)
	}
	return times, last, nil
}

func getOnce(ctx context.Context, client *http.Client, url string, perClient int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var r io.Reader = resp.Body
	if perClient > 0 {
		r = &limitedReader{r: resp.Body, ctx: ctx, lim: rate.NewLimiter(rate.Limit(perClient), 32<<10)}
	}
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("GET %s: %d of %d bytes", url, n, resp.ContentLength)
	}
	return nil
}

// limitedReader paces reads through a token bucket.
type limitedReader struct {
	r   io.Reader
	ctx context.Context
	lim *rate.Limiter
}

// Read reads at most a burst and waits for its tokens.
func (l *limitedReader) Read(p []byte) (int, error) {
	if b := l.lim.Burst(); len(p) > b {
		p = p[:b]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.lim.WaitN(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// SwarmTargets checks a swarm report against the scenario's targets:
// T_min/T >= 0.8 at the largest N, origin bytes <= F + one piece for every
// N, and completion at the largest N <= 1.3x that at N=1.
func SwarmTargets(rep *SwarmReport) []Target {
	if len(rep.Runs) == 0 {
		return nil
	}
	var ts []Target
	big := rep.Runs[0]
	var one *SwarmRun
	for i := range rep.Runs {
		r := &rep.Runs[i]
		if r.N >= big.N {
			big = *r
		}
		if r.N == 1 {
			one = r
		}
	}
	ratio := math.NaN()
	if big.Failed == 0 && big.Last > 0 {
		ratio = big.Ratio
	}
	ts = append(ts, AtLeast(fmt.Sprintf("T_min/T at N=%d >= 0.8", big.N), ratio, 0.8, "%.2f"))
	worst, worstN := int64(-1), 0
	for _, r := range rep.Runs {
		if r.OriginBytes > worst {
			worst, worstN = r.OriginBytes, r.N
		}
	}
	limit := rep.Config.FileSize + rep.PieceSize
	t := AtMost(fmt.Sprintf("origin bytes <= F + one piece (%d) for every N", limit), float64(worst), float64(limit), "%.0f")
	t.Measured = fmt.Sprintf("max %d bytes (%.3f F, at N=%d)", worst, float64(worst)/float64(rep.Config.FileSize), worstN)
	ts = append(ts, t)
	if one != nil && big.N != 1 {
		r := math.NaN()
		if one.Failed == 0 && big.Failed == 0 && one.Last > 0 {
			r = big.Last / one.Last
		}
		t := AtMost(fmt.Sprintf("completion at N=%d <= 1.3x N=1", big.N), r, 1.3, "%.2fx")
		t.Measured = fmt.Sprintf("%.2fx (%s vs %s)", r, fmtSec(big.Last), fmtSec(one.Last))
		ts = append(ts, t)
	}
	return ts
}

// SwarmTable renders a swarm report as a table.
func SwarmTable(rep *SwarmReport) *Table {
	t := &Table{Title: fmt.Sprintf("swarm scaling (F=%s, u_s=%s/s, u=%s/s, d=%s/s, piece %s, peers as %s)",
		fmtMiB(rep.Config.FileSize), fmtMiB(rep.Config.OriginCap), fmtMiB(rep.Config.Upload),
		fmtMiB(rep.Config.Download), fmtMiB(rep.PieceSize), rep.Mode),
		Header: []string{"N", "T_min", "T_last", "T_min/T", "p50", "p99", "origin", "from peers", "from seed",
			"seed served", "b2s", "failed", "finish lag p50/max", "CPU busy", "CPU s: sn/peers/bench/other", "CPU s/GiB: seed/peers", "N*F/u_s", "direct"}}
	for _, r := range rep.Runs {
		direct := "-"
		if r.Direct != nil {
			direct = fmtSec(*r.Direct)
		}
		last, ratio := fmtSec(r.Last), fmtRatio(r.Ratio)
		if r.Failed > 0 || r.Last == 0 {
			last, ratio = "-", "-"
		}
		lag := "-"
		if r.FinishLag.N > 0 {
			lag = fmt.Sprintf("%.2f/%.2fs", r.FinishLag.P50, r.FinishLag.Max)
		}
		p50, p99 := "-", "-"
		if r.PerPeer.N > 0 {
			p50, p99 = fmtSec(r.PerPeer.P50), fmtSec(r.PerPeer.P99)
		}
		t.AddRow(r.N, fmtSec(r.TMin), last, ratio, p50, p99,
			fmtMiB(r.OriginBytes), fmtMiB(r.FromPeers), fmtMiB(r.FromSeed), fmtMiB(r.SeedServed),
			r.BackToSource, r.Failed, lag, fmtPct(r.CPUBusy),
			fmt.Sprintf("%.1f/%.1f/%.1f/%.1f", r.SupernodeCPU, r.PeersCPU, r.BenchCPU, r.OtherCPU),
			fmtPerGiB(r.SeedCPUPerGiB, r.PeersCPUPerGiB), fmtSec(r.ClientServer), direct)
	}
	t.Notes = append(t.Notes,
		"T_last: last peer done, from the first start; p50/p99: per-peer, from each peer's own start.",
		"CPU busy: share of all cores busy during the P2P run (near 100%: the machine, not the product, is the limit);",
		"CPU s: CPU seconds of the supernode, all peer processes, dfbench itself, and anything else on the machine;",
		"CPU s/GiB: user+system seconds per GiB delivered (completed peers x F): seed = supernode process, peers = all peer processes.",
		"finish lag: from a peer's store holding every piece (sampled every 250ms) to its result line.",
		"T_min = max(F/u_s, F/d, N*F/(u_s+N*u)) (Kumar-Ross); N*F/u_s: origin alone; direct: N plain GETs from the capped origin, each read-capped at d.")
	if len(rep.Config.PeerArgs) > 0 || len(rep.Config.SupernodeArgs) > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("extra flags: peers %q, supernode %q", rep.Config.PeerArgs, rep.Config.SupernodeArgs))
	}
	if rep.Mode == ModeDfget && rep.Config.KeepSeeding {
		t.Notes = append(t.Notes, fmt.Sprintf("peers keep seeding after their download; completion = result line seen (polled every %v).", completionPoll))
	}
	for _, r := range rep.Runs {
		for _, e := range r.Errors {
			t.Notes = append(t.Notes, fmt.Sprintf("N=%d error: %s", r.N, e))
		}
	}
	return t
}
