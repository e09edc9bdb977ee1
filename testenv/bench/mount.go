package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// MountConfig configures the dfmount scenario.
type MountConfig struct {
	// FileSize is the size of the origin file, in bytes.
	FileSize int64 `json:"fileSize"`
	// Reads is how many random reads the time-to-first-byte part makes;
	// ReadSize is their size (4 KiB).
	Reads    int `json:"reads"`
	ReadSize int `json:"readSize"`
	// Seed drives the file content and the read offsets.
	Seed int64 `json:"seed"`
	// Reps is how many times each sequential read is repeated (each
	// cold one with a fresh supernode and mount or dfget); medians are
	// reported.
	Reps int `json:"reps"`
	// Timeout bounds one sequential read or download (0: 10 minutes).
	Timeout time.Duration `json:"timeoutNs"`
	// Verify checks the SHA-256 of what came through the mount and dfget
	// (after timing).
	Verify bool `json:"verify"`
	// DropCaches allows writing 3 to /proc/sys/vm/drop_caches (root only)
	// when posix_fadvise(DONTNEED) leaves a file's pages in the page cache.
	DropCaches bool `json:"dropCaches"`
}

// CPUUse is the CPU time used over a span, in seconds.
type CPUUse struct {
	// Procs is per named process (those readable at both ends of the span).
	Procs map[string]float64 `json:"procs,omitempty"`
	// Bench is dfbench itself: its in-process servers (origin, registry
	// front) and readers.
	Bench float64 `json:"bench"`
	// Machine is the busy time of all cores, Busy its fraction of the
	// span's capacity (-1: unknown).
	Machine float64 `json:"machine"`
	Busy    float64 `json:"busy"`
}

// cpuSpan measures CPUUse between its start and stop.
type cpuSpan struct {
	pids  map[string]int
	p0    map[string]float64
	m0    CPUTimes
	mOK   bool
	self0 float64
}

// startSpan starts measuring the machine, dfbench and the named pids.
func startSpan(pids map[string]int) *cpuSpan {
	s := &cpuSpan{pids: pids, p0: map[string]float64{}}
	for name, pid := range pids {
		if v, ok := ProcCPUSeconds(pid); ok {
			s.p0[name] = v
		}
	}
	s.self0 = SelfCPUSeconds()
	s.m0, s.mOK = ReadCPUTimes()
	return s
}

func (s *cpuSpan) stop() CPUUse {
	u := CPUUse{Busy: -1, Procs: map[string]float64{}}
	if m1, ok := ReadCPUTimes(); ok && s.mOK {
		u.Busy, u.Machine = Utilization(s.m0, m1), BusySeconds(s.m0, m1)
	}
	u.Bench = SelfCPUSeconds() - s.self0
	for name, pid := range s.pids {
		if v0, ok := s.p0[name]; ok {
			if v, ok := ProcCPUSeconds(pid); ok {
				u.Procs[name] = v - v0
			}
		}
	}
	return u
}

// TTFBRow is one series of the random reads.
type TTFBRow struct {
	Name string `json:"name"`
	// Latency is each read's time, in read order, in seconds.
	Latency []float64 `json:"latencySec"`
	Summary Summary   `json:"summary"`
	// OriginBytes is what the origin served for the series (-1: none
	// involved).
	OriginBytes int64 `json:"originBytes"`
}

// Names of the MountReport.TTFB rows.
const (
	TTFBColdSeed = "mount: cold peer, cold seed (lazy)"
	TTFBWarmSeed = "mount: cold peer, warm seed"
	TTFBPresent  = "mount: pieces present, cold cache"
	TTFBLocal    = "local disk, cold cache"
)

// SeqRead is one sequential read of the whole file (or one download).
type SeqRead struct {
	// Name says what was read and how.
	Name string `json:"name"`
	// Samples are the wall times of the repetitions; Seconds is their
	// median (dfget: process start to exit) and MiBps the throughput.
	Samples []float64 `json:"samplesSec"`
	Seconds float64   `json:"sec"`
	MiBps   float64   `json:"mibPerSec"`
	// FirstSamples (cold rows) are the untimed first cold reads that
	// precede each timed one (see RunMount), in seconds.
	FirstSamples []float64 `json:"firstColdSec,omitempty"`
	// Resident is the fraction of the backing file's pages that were in
	// the page cache just before the (last) read (-1: not measured).
	Resident float64 `json:"residentBefore"`
	// OriginBytes is what the origin served during the (last) read.
	OriginBytes int64 `json:"originBytes"`
	// CPU is what the sample nearest the median cost ("peer" is dfmount
	// or dfget); CPUs has it for every sample.
	CPU  CPUUse   `json:"cpu"`
	CPUs []CPUUse `json:"cpus"`
	// Dfget is dfget's result line (dfget row only).
	Dfget *DfgetResult `json:"dfget,omitempty"`
}

// Names of the MountReport.Seq rows, in table order.
const (
	SeqLocalCold     = "local disk, cold cache"
	SeqLocalWarm     = "local disk, warm cache"
	SeqDfget         = "dfget, cold supernode"
	SeqMountCold     = "mount, cold, prefetch off"
	SeqMountPrefetch = "mount, cold, prefetch on"
	SeqMountDone     = "mount, complete, warm cache"
	SeqMountDoneCold = "mount, complete, cold cache"
	SeqStoreCold     = "mount's store file, cold cache"
)

var seqOrder = []string{SeqLocalCold, SeqLocalWarm, SeqDfget, SeqMountCold, SeqMountPrefetch, SeqMountDone, SeqMountDoneCold, SeqStoreCold}

// MountReport is the dfmount scenario's result.
type MountReport struct {
	Config    MountConfig `json:"config"`
	PieceSize int64       `json:"pieceSize"`
	// Evict says how page caches were emptied before cold measurements.
	Evict string `json:"evict"`
	// MountSetup is the time from starting dfmount to a live mount
	// (registration with the supernode included), MountFirstOpen the
	// first open(2) of the file, in seconds; neither is in the reads.
	MountSetup     float64 `json:"mountSetupSec"`
	MountFirstOpen float64 `json:"mountFirstOpenSec"`
	// Offsets are the random read offsets, in read order.
	Offsets []int64   `json:"offsets"`
	TTFB    []TTFBRow `json:"ttfb"`
	// LocalResident is the fraction of the local file cached before its
	// random reads.
	LocalResident float64   `json:"localResidentBefore"`
	Seq           []SeqRead `json:"seq"`
	Targets       []Target  `json:"targets"`
}

// TTFBRow returns the random-read series with the given name, or nil.
func (r *MountReport) TTFBRow(name string) *TTFBRow {
	for i := range r.TTFB {
		if r.TTFB[i].Name == name {
			return &r.TTFB[i]
		}
	}
	return nil
}

// SeqRow returns the sequential row with the given name, or nil.
func (r *MountReport) SeqRow(name string) *SeqRead {
	for i := range r.Seq {
		if r.Seq[i].Name == name {
			return &r.Seq[i]
		}
	}
	return nil
}

// RunMount measures dfmount against dfget and the local disk, all with
// the same FileSize bytes of random content, which are written to a local
// file that the origin also serves (so the origin reads a cold cache too
// when the local file's cache is emptied).
//
//  1. Time to first byte: Reads random ReadSize reads, each at a
//     page-aligned offset in a piece no other read touches, timed one by
//     one, through (a) a fresh mount with prefetch off against a fresh
//     supernode (lazy seed: each read's piece comes from the origin
//     through the seed), (b) the same mount again with its page caches
//     emptied (pieces present: FUSE and the store only), (c) a second
//     fresh mount against the now warm seed, and (d) the local file with
//     its page cache emptied. All file descriptors are POSIX_FADV_RANDOM,
//     so the kernel reads the 4 KiB asked for, not a readahead window.
//  2. Sequential reads of the whole file (1 MiB read calls, bytes
//     discarded), each kind cfg.Reps times, interleaved: the local file
//     cold and warm; dfget against a fresh supernode; a fresh mount (fresh
//     supernode and data dir) with prefetch off, then the same mount
//     complete (file reopened: passthrough where the kernel has it) with
//     warm and emptied caches, and the mount's store file read directly
//     (a control: the same bytes, same disk layout, no FUSE); and a fresh
//     mount with prefetch on (dfmount's default).
//
// Page caches are emptied with posix_fadvise(DONTNEED) after fdatasync,
// checked with mincore, and, when pages remain and cfg.DropCaches is set,
// with /proc/sys/vm/drop_caches. Re-reads of an existing file (local,
// complete mount, store) are timed after an untimed read of the same file
// (see timedRead); the first fetches (dfget, cold mounts) cannot be.
func RunMount(ctx context.Context, env *Env, cfg MountConfig) (*MountReport, error) {
	if cfg.ReadSize <= 0 {
		cfg.ReadSize = 4096
	}
	if cfg.Reads <= 0 {
		cfg.Reads = 200
	}
	if cfg.Reps <= 0 {
		cfg.Reps = 3
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Seed == 0 {
		cfg.Seed = 51
	}
	rep := &MountReport{Config: cfg, PieceSize: manifest.PieceSizeFor(cfg.FileSize), LocalResident: -1}
	tb, closeScope, err := env.Scope()
	if err != nil {
		return rep, err
	}
	defer closeScope()
	const name = "mount.bin"
	var origin *testenv.Origin
	var local, sum string
	if err := guard(func() error {
		origin = testenv.NewOrigin(tb)
		local = filepath.Join(tb.TempDir(), name)
		env.Logf("mount: writing a %s local file (also the origin's)", fmtMiB(cfg.FileSize))
		var err error
		if sum, err = writeRandomFile(local, cfg.FileSize, cfg.Seed); err != nil {
			return err
		}
		origin.AddFile(name, local)
		return nil
	}); err != nil {
		return rep, err
	}
	m := &mountRun{env: env, cfg: cfg, rep: rep, origin: origin, name: name, url: origin.URL(name), sum: sum, local: local,
		ev: &evictor{allowDrop: cfg.DropCaches}}
	defer func() { rep.Evict = m.ev.method() }()

	// 1. Time to first byte.
	rep.Offsets = ttfbOffsets(cfg, rep.PieceSize)
	want, err := m.ttfbMount(ctx)
	if err != nil {
		return rep, fmt.Errorf("mount ttfb: %w", err)
	}
	rep.LocalResident = m.ev.evict(local)
	bufs, lat, err := preads(ctx, local, rep.Offsets, cfg.ReadSize)
	if err != nil {
		return rep, fmt.Errorf("local ttfb: %w", err)
	}
	if err := sameBufs(want, bufs, rep.Offsets); err != nil {
		return rep, fmt.Errorf("mount ttfb: %w", err)
	}
	rep.TTFB = append(rep.TTFB, TTFBRow{Name: TTFBLocal, Latency: lat, Summary: Summarize(lat), OriginBytes: -1})
	for _, r := range rep.TTFB {
		env.Logf("mount ttfb: %s: p50 %s p99 %s", r.Name, fmtMs(r.Summary.P50), fmtMs(r.Summary.P99))
	}

	// 2. Sequential reads, the kinds interleaved in each repetition so
	// that slow drifts of the machine touch them all alike.
	m.rows = map[string]*SeqRead{}
	defer m.finishSeq()
	for i := 0; i < cfg.Reps; i++ {
		env.Logf("mount: sequential reads, repetition %d of %d", i+1, cfg.Reps)
		if err := m.seqLocal(ctx); err != nil {
			return rep, fmt.Errorf("local read: %w", err)
		}
		if err := m.seqDfget(ctx); err != nil {
			return rep, fmt.Errorf("dfget: %w", err)
		}
		if err := m.seqMount(ctx, false); err != nil {
			return rep, fmt.Errorf("mount read: %w", err)
		}
		if err := m.seqMount(ctx, true); err != nil {
			return rep, fmt.Errorf("mount read (prefetch on): %w", err)
		}
	}
	m.finishSeq()
	rep.Targets = MountTargets(rep)
	return rep, nil
}

// mountRun is the state RunMount's phases share.
type mountRun struct {
	env                   *Env
	cfg                   MountConfig
	rep                   *MountReport
	origin                *testenv.Origin
	name, url, sum, local string
	ev                    *evictor
	rows                  map[string]*SeqRead
}

// sample records one sequential read (or download) of the row name.
func (m *mountRun) sample(name string, rr readResult, origin int64, res *DfgetResult) {
	r := m.rows[name]
	if r == nil {
		r = &SeqRead{Name: name}
		m.rows[name] = r
	}
	r.Samples, r.CPUs = append(r.Samples, rr.secs), append(r.CPUs, rr.cpu)
	if rr.first > 0 {
		r.FirstSamples = append(r.FirstSamples, rr.first)
	}
	r.Resident, r.OriginBytes = rr.resident, origin
	if res != nil {
		r.Dfget = res
	}
	first := ""
	if rr.first > 0 {
		first = fmt.Sprintf(" (first cold read %.2fs)", rr.first)
	}
	m.env.Logf("mount: %s: %.2fs, %.0f MiB/s%s", name, rr.secs, float64(m.cfg.FileSize)/MiB/rr.secs, first)
}

// finishSeq turns the rows' samples into medians, in table order, once.
func (m *mountRun) finishSeq() {
	if m.rows == nil {
		return
	}
	for _, name := range seqOrder {
		r := m.rows[name]
		if r == nil || len(r.Samples) == 0 {
			continue
		}
		r.Seconds = median(r.Samples)
		r.MiBps = float64(m.cfg.FileSize) / MiB / r.Seconds
		// The CPU of the sample nearest the median.
		best := 0
		for i, x := range r.Samples {
			if math.Abs(x-r.Seconds) < math.Abs(r.Samples[best]-r.Seconds) {
				best = i
			}
		}
		r.CPU = r.CPUs[best]
		m.rep.Seq = append(m.rep.Seq, *r)
	}
	m.rows = nil
}

func sameBufs(a, b [][]byte, offsets []int64) error {
	for i := range offsets {
		if string(a[i]) != string(b[i]) {
			return fmt.Errorf("the %d bytes at %d differ between reads", len(a[i]), offsets[i])
		}
	}
	return nil
}

// mountArgs are dfmount's flags for an embedded peer with its own store.
func mountArgs(sn *testenv.Supernode, dataDir string, prefetch bool) []string {
	return []string{"--supernode", sn.Addr, "--data-dir", dataDir, "--no-daemon", "--upload-listen", "127.0.0.1:0",
		"--prefetch=" + strconv.FormatBool(prefetch)}
}

// ttfbMount runs the random reads through mounts (rows a, b and c of
// RunMount) and returns the bytes read.
func (m *mountRun) ttfbMount(ctx context.Context) ([][]byte, error) {
	tb, closeScope, err := m.env.Scope()
	if err != nil {
		return nil, err
	}
	defer closeScope()
	var sn *testenv.Supernode
	var dataA, mntA, dataB, mntB string
	if err := guard(func() error {
		sn = testenv.StartSupernode(tb, m.env.BinDir, append([]string{"--log-level", "warn"}, testenv.AllowOrigins(m.origin.Addr())...)...)
		dataA, mntA, dataB, mntB = tb.TempDir(), tb.TempDir(), tb.TempDir(), tb.TempDir()
		return nil
	}); err != nil {
		return nil, err
	}
	m.ev.evict(m.local)
	start := time.Now()
	pA, err := startDfmount(ctx, tb, m.env.BinDir, m.url, mntA, mountArgs(sn, dataA, false)...)
	if err != nil {
		return nil, err
	}
	defer stopDfmount(pA, mntA)
	m.rep.MountSetup = time.Since(start).Seconds()
	fileA := filepath.Join(mntA, m.name)
	t0 := time.Now()
	f, err := os.Open(fileA)
	if err != nil {
		return nil, err
	}
	m.rep.MountFirstOpen = time.Since(t0).Seconds()
	f.Close()

	series := func(rowName, file string, p *testenv.Proc) ([][]byte, error) {
		m.origin.ResetCounters()
		bufs, lat, err := preads(ctx, file, m.rep.Offsets, m.cfg.ReadSize)
		if err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", rowName, err, p.Tail(10))
		}
		m.rep.TTFB = append(m.rep.TTFB, TTFBRow{Name: rowName, Latency: lat, Summary: Summarize(lat),
			OriginBytes: m.origin.BytesServed(m.name)})
		return bufs, nil
	}
	// (a) cold peer, cold seed.
	want, err := series(TTFBColdSeed, fileA, pA)
	if err != nil {
		return nil, err
	}
	// (b) the same pieces again, present in the store, caches emptied.
	m.ev.evictOpen(fileA)
	if store, _ := filepath.Glob(filepath.Join(dataA, "tasks", "*", "data")); len(store) == 1 {
		m.ev.evict(store[0])
	}
	got, err := series(TTFBPresent, fileA, pA)
	if err != nil {
		return nil, err
	}
	if err := sameBufs(want, got, m.rep.Offsets); err != nil {
		return nil, err
	}
	// (c) a second fresh peer against the warm seed.
	pB, err := startDfmount(ctx, tb, m.env.BinDir, m.url, mntB, mountArgs(sn, dataB, false)...)
	if err != nil {
		return nil, err
	}
	defer stopDfmount(pB, mntB)
	got, err = series(TTFBWarmSeed, filepath.Join(mntB, m.name), pB)
	if err != nil {
		return nil, err
	}
	if err := sameBufs(want, got, m.rep.Offsets); err != nil {
		return nil, err
	}
	return want, nil
}

// seqLocal reads the local file once cold, once warm.
func (m *mountRun) seqLocal(ctx context.Context) error {
	for _, cold := range []bool{true, false} {
		name := SeqLocalWarm
		if cold {
			name = SeqLocalCold
		}
		r, err := m.timedRead(ctx, m.local, cold, nil, func() float64 { return m.ev.evict(m.local) },
			func() float64 { return residentFraction(m.local) })
		if err != nil {
			return err
		}
		m.sample(name, r, -1, nil)
	}
	return nil
}

// readResult is one timed sequential read.
type readResult struct {
	secs, first, resident float64
	cpu                   CPUUse
}

// timedRead times a read of path after an untimed one. Cold: caches
// emptied (drop, which returns the share still cached), a first cold
// read (its time in first), caches emptied again, then the timed read.
// On this VM, a read into page-cache memory the host has taken back
// (virtio-balloon free page reporting) costs up to ~1.5 ms of CPU per
// MiB more than one into memory just freed by the first read, and
// whichever read comes first after the host took memory back pays it;
// the first read makes every cold read start from the same state. Warm:
// the first read makes sure the file is cached (resident says how much
// was). pids are measured during the timed read.
func (m *mountRun) timedRead(ctx context.Context, path string, cold bool, pids map[string]int, drop, resident func() float64) (readResult, error) {
	var r readResult
	if cold {
		drop()
	}
	first, _, err := timeSeqRead(ctx, path, m.cfg.FileSize, m.cfg.Timeout, nil)
	if err != nil {
		return r, err
	}
	if cold {
		r.first, r.resident = first, drop()
	} else {
		r.resident = resident()
	}
	r.secs, r.cpu, err = timeSeqRead(ctx, path, m.cfg.FileSize, m.cfg.Timeout, pids)
	return r, err
}

// seqDfget times one dfget of the file against a fresh supernode.
func (m *mountRun) seqDfget(ctx context.Context) error {
	tb, closeScope, err := m.env.Scope()
	if err != nil {
		return err
	}
	defer closeScope()
	var sn *testenv.Supernode
	var out string
	if err := guard(func() error {
		sn = testenv.StartSupernode(tb, m.env.BinDir, append([]string{"--log-level", "warn"}, testenv.AllowOrigins(m.origin.Addr())...)...)
		out = filepath.Join(tb.TempDir(), "dfget.bin")
		return nil
	}); err != nil {
		return err
	}
	syscall.Sync()
	resident := m.ev.evict(m.local)
	m.origin.ResetCounters()
	span := startSpan(map[string]int{"supernode": sn.Proc.Pid()})
	var p *testenv.Proc
	start := time.Now()
	if err := guard(func() error {
		p = testenv.Dfget(tb, m.env.BinDir, sn.Addr, m.url, out, "--no-daemon", "--log-level", "warn",
			"--timeout", fmt.Sprintf("%ds", int(m.cfg.Timeout.Seconds())))
		return nil
	}); err != nil {
		return err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Kill9()
		return ctx.Err()
	case <-time.After(m.cfg.Timeout + 10*time.Second):
		p.Kill9()
		return errors.New("dfget did not finish in time")
	}
	secs := time.Since(start).Seconds()
	cpu := span.stop()
	if code, err := p.Wait(0); err != nil || code != 0 {
		return fmt.Errorf("dfget exit %d (%v): %s", code, err, p.Tail(10))
	}
	if st := p.Cmd.ProcessState; st != nil {
		cpu.Procs["peer"] = (st.UserTime() + st.SystemTime()).Seconds()
	}
	res, err := FindDfgetResult(p.Log())
	if err != nil {
		return err
	}
	m.sample(SeqDfget, readResult{secs: secs, cpu: cpu, resident: resident}, m.origin.BytesServed(m.name), &res)
	if m.cfg.Verify {
		if got, err := sha256File(out); err != nil || got != m.sum {
			return fmt.Errorf("dfget output sha256 %s (%v), want %s", got, err, m.sum)
		}
	}
	return nil
}

// seqMount reads the whole file once through a fresh mount (fresh
// supernode and data dir); without prefetch, it then reads the complete
// file again with warm and with emptied caches.
func (m *mountRun) seqMount(ctx context.Context, prefetch bool) error {
	tb, closeScope, err := m.env.Scope()
	if err != nil {
		return err
	}
	defer closeScope()
	var sn *testenv.Supernode
	var dataDir, mnt string
	if err := guard(func() error {
		sn = testenv.StartSupernode(tb, m.env.BinDir, append([]string{"--log-level", "warn"}, testenv.AllowOrigins(m.origin.Addr())...)...)
		dataDir, mnt = tb.TempDir(), tb.TempDir()
		return nil
	}); err != nil {
		return err
	}
	syscall.Sync()
	resident := m.ev.evict(m.local)
	p, err := startDfmount(ctx, tb, m.env.BinDir, m.url, mnt, mountArgs(sn, dataDir, prefetch)...)
	if err != nil {
		return err
	}
	defer stopDfmount(p, mnt)
	file := filepath.Join(mnt, m.name)
	pids := map[string]int{"peer": p.Pid(), "supernode": sn.Proc.Pid()}

	name := SeqMountCold
	if prefetch {
		name = SeqMountPrefetch
	}
	m.origin.ResetCounters()
	secs, cpu, err := timeSeqRead(ctx, file, m.cfg.FileSize, m.cfg.Timeout, pids)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, p.Tail(10))
	}
	m.sample(name, readResult{secs: secs, cpu: cpu, resident: resident}, m.origin.BytesServed(m.name), nil)
	if prefetch {
		return nil
	}
	if present, total, err := mountProgress(file); err != nil || present != total {
		return fmt.Errorf("after a full read the mount holds %d of %d bytes (%v)", present, total, err)
	}
	store, _ := filepath.Glob(filepath.Join(dataDir, "tasks", "*", "data"))
	if len(store) != 1 {
		return fmt.Errorf("want one task data file in the mount's store, found %v", store)
	}
	dropMount := func() float64 {
		m.ev.evictOpen(file)
		return m.ev.evict(store[0])
	}
	dropStore := func() float64 { return m.ev.evict(store[0]) }
	storeResident := func() float64 { return residentFraction(store[0]) }
	for _, read := range []struct {
		name, path string
		cold       bool
		drop       func() float64
		pids       map[string]int
	}{
		{SeqMountDone, file, false, dropMount, pids},
		{SeqMountDoneCold, file, true, dropMount, pids},
		{SeqStoreCold, store[0], true, dropStore, nil},
	} {
		m.origin.ResetCounters()
		r, err := m.timedRead(ctx, read.path, read.cold, read.pids, read.drop, storeResident)
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", read.name, err, p.Tail(10))
		}
		m.sample(read.name, r, m.origin.BytesServed(m.name), nil)
	}
	if m.cfg.Verify {
		if got, err := sha256File(file); err != nil || got != m.sum {
			return fmt.Errorf("sha256 through the mount %s (%v), want %s", got, err, m.sum)
		}
	}
	return nil
}

// timeSeqRead reads path from start to end in 1 MiB read calls, bytes
// discarded, and returns the time it took and the CPU it cost (pids: the
// processes to measure).
func timeSeqRead(ctx context.Context, path string, size int64, timeout time.Duration, pids map[string]int) (float64, CPUUse, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, CPUUse{}, err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	buf := make([]byte, 1<<20)
	var n int64
	syscall.Sync() // no write-back of earlier phases during the read
	span := startSpan(pids)
	start := time.Now()
	for {
		if ctx.Err() != nil {
			return 0, CPUUse{}, fmt.Errorf("read of %s cut short after %s: %w", path, fmtMiB(n), ctx.Err())
		}
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, CPUUse{}, fmt.Errorf("read %s at %d: %w", path, n, err)
		}
	}
	secs := time.Since(start).Seconds()
	cpu := span.stop()
	if n != size {
		return 0, cpu, fmt.Errorf("read %d bytes of %s, want %d", n, path, size)
	}
	return secs, cpu, nil
}

// writeRandomFile writes size bytes of testenv's random content for seed
// to path and returns its SHA-256 in hex.
func writeRandomFile(path string, size, seed int64) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.CopyBuffer(io.MultiWriter(f, h), testenv.RandomReader(size, seed), make([]byte, 1<<20))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ttfbOffsets picks cfg.Reads page-aligned offsets, each in a different
// piece while there are enough pieces, in random order.
func ttfbOffsets(cfg MountConfig, pieceSize int64) []int64 {
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x4b1d))
	numPieces := int((cfg.FileSize + pieceSize - 1) / pieceSize)
	perm := rng.Perm(numPieces)
	const page = 4096
	var out []int64
	for i := 0; i < cfg.Reads; i++ {
		p := int64(perm[i%numPieces])
		lo := p * pieceSize
		hi := min(lo+pieceSize, cfg.FileSize) - int64(cfg.ReadSize)
		if hi < lo {
			hi = lo
		}
		off := lo + rng.Int64N((hi-lo)/page+1)*page
		out = append(out, off)
	}
	return out
}

// startDfmount starts dfmount URL MNT with args and waits until the mount
// is live; the mount is detached at scope close even if dfmount was killed.
func startDfmount(ctx context.Context, tb testenv.TB, binDir, url, mnt string, args ...string) (*testenv.Proc, error) {
	// Registered before Start: runs after the process is killed.
	tb.Cleanup(func() { detachMount(mnt) })
	p := testenv.Start(tb, binDir, "dfmount", append(append([]string{}, args...), url, mnt)...)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if typ, ok := fusefs.MountedType(mnt); ok && typ == "fuse."+fusefs.FSName && fusefs.Alive(mnt) {
			return p, nil
		}
		if p.Exited() {
			return p, fmt.Errorf("dfmount exited before mounting:\n%s", p.Tail(20))
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return p, ctx.Err()
		}
	}
	return p, fmt.Errorf("dfmount did not mount within a minute:\n%s", p.Tail(20))
}

// detachMount lazily unmounts mnt if it is mounted.
func detachMount(mnt string) {
	for i := 0; i < 4; i++ {
		if _, ok := fusefs.MountedType(mnt); !ok {
			return
		}
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			return
		}
	}
}

// stopDfmount asks dfmount to unmount and exit (SIGTERM), and kills it
// and detaches the mount if it does not within 30 s.
func stopDfmount(p *testenv.Proc, mnt string) {
	p.Signal(syscall.SIGTERM)
	if _, err := p.Wait(30 * time.Second); err != nil {
		p.Kill9()
	}
	detachMount(mnt)
}

// preads opens path, sets POSIX_FADV_RANDOM, and reads size bytes at each
// offset, timing each read.
func preads(ctx context.Context, path string, offsets []int64, size int) ([][]byte, []float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		return nil, nil, fmt.Errorf("fadvise RANDOM: %w", err)
	}
	bufs := make([][]byte, len(offsets))
	lat := make([]float64, len(offsets))
	syscall.Sync() // no write-back of earlier phases during the reads
	for i, off := range offsets {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		buf := make([]byte, size)
		t := time.Now()
		n, err := f.ReadAt(buf, off)
		lat[i] = time.Since(t).Seconds()
		if n < size {
			return nil, nil, fmt.Errorf("read %d bytes at %d of %s: %d, %v", size, off, path, n, err)
		}
		bufs[i] = buf
	}
	return bufs, lat, nil
}

// mountProgress reads the user.damselfly.progress attribute of a mounted file.
func mountProgress(path string) (present, total int64, err error) {
	buf := make([]byte, 64)
	n, err := unix.Getxattr(path, fusefs.XattrProgress, buf)
	if err != nil {
		return 0, 0, err
	}
	a, b, _ := strings.Cut(string(buf[:n]), "/")
	present, _ = strconv.ParseInt(a, 10, 64)
	total, _ = strconv.ParseInt(b, 10, 64)
	return present, total, nil
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// evictor empties page caches and remembers how.
type evictor struct {
	allowDrop      bool
	fadvise, drops int
	dropErr        error
}

// evict writes back and drops path's cached pages and returns the fraction
// still resident afterwards (-1 if it cannot tell).
func (e *evictor) evict(path string) float64 {
	syscall.Sync()
	if f, err := os.Open(path); err == nil {
		unix.Fdatasync(int(f.Fd()))
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
		e.fadvise++
	}
	r := residentFraction(path)
	if r > 0.01 && e.allowDrop {
		syscall.Sync()
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
			e.dropErr = err
		} else {
			e.drops++
			r = residentFraction(path)
		}
	}
	return r
}

// evictOpen drops the page cache of a file that cannot be mmapped for a
// check (a FUSE file: its own page cache, not its backing file's).
func (e *evictor) evictOpen(path string) {
	if f, err := os.Open(path); err == nil {
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
	}
}

func (e *evictor) method() string {
	s := "posix_fadvise(POSIX_FADV_DONTNEED) after fdatasync, checked with mincore"
	switch {
	case e.drops > 0:
		s += fmt.Sprintf("; echo 3 > /proc/sys/vm/drop_caches (%d times, where pages remained)", e.drops)
	case e.dropErr != nil:
		s += fmt.Sprintf("; drop_caches failed: %v", e.dropErr)
	}
	return s
}

// residentFraction returns the fraction of path's pages in the page cache
// (mincore on a read-only mapping), -1 if it cannot tell.
func residentFraction(path string) float64 {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return -1
	}
	size := fi.Size()
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return -1
	}
	defer unix.Munmap(data)
	page := int64(os.Getpagesize())
	vec := make([]byte, (size+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)),
		uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return -1
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return float64(n) / float64(len(vec))
}

// MountTargets compares the mount with dfget and the local disk. The
// issue names the comparisons, not bounds; the bench holds the mount to
// the single-client goal (within 1.1x) against each.
func MountTargets(rep *MountReport) []Target {
	const note = "bound set by the bench; the issue names the comparison"
	var ts []Target
	ratio := func(name, a, b string) {
		ra, rb := rep.SeqRow(a), rep.SeqRow(b)
		if ra == nil || rb == nil || ra.MiBps <= 0 || rb.MiBps <= 0 {
			return
		}
		r := rb.MiBps / ra.MiBps
		t := AtMost(name, r, 1.1, "%.2fx")
		t.Measured = fmt.Sprintf("%.2fx (%.0f vs %.0f MiB/s)", r, ra.MiBps, rb.MiBps)
		t.Note = note
		ts = append(ts, t)
	}
	size := fmtMiB(rep.Config.FileSize)
	ratio(fmt.Sprintf("cold sequential read through the mount (prefetch off) within 1.1x of dfget, %s", size), SeqMountCold, SeqDfget)
	ratio(fmt.Sprintf("complete mount, warm cache, within 1.1x of local disk warm, %s", size), SeqMountDone, SeqLocalWarm)
	ratio(fmt.Sprintf("complete mount, cold cache, within 1.1x of local disk cold, %s", size), SeqMountDoneCold, SeqLocalCold)
	return ts
}

// MountTables renders a mount report: time to first byte, then sequential
// reads.
func MountTables(rep *MountReport) []*Table {
	ttfb := &Table{Title: fmt.Sprintf("dfmount: time to first byte, %d random %d-byte reads of a cold %s file (piece %s)",
		len(rep.Offsets), rep.Config.ReadSize, fmtMiB(rep.Config.FileSize), fmtMiB(rep.PieceSize)),
		Header: []string{"reads from", "n", "min", "p50", "p90", "p99", "max", "mean", "p50/local", "p99/local", "origin"}}
	local := rep.TTFBRow(TTFBLocal)
	for _, r := range rep.TTFB {
		s := r.Summary
		p50, p99, origin := "-", "-", "-"
		if local != nil && local.Summary.P50 > 0 && r.Name != TTFBLocal {
			p50, p99 = fmtRatio(s.P50/local.Summary.P50), fmtRatio(s.P99/local.Summary.P99)
		}
		if r.OriginBytes >= 0 {
			origin = fmtMiB(r.OriginBytes)
		}
		ttfb.AddRow(r.Name, s.N, fmtMs(s.Min), fmtMs(s.P50), fmtMs(s.P90), fmtMs(s.P99), fmtMs(s.Max), fmtMs(s.Mean), p50, p99, origin)
	}
	ttfb.Notes = append(ttfb.Notes,
		"cold seed: fresh supernode and mount, prefetch off (lazy seed: each read's piece comes from the origin through the seed);",
		"pieces present: the same mount and offsets again, FUSE and store page caches emptied (FUSE + store read only);",
		"warm seed: a second fresh mount against the same supernode (piece from the seed, no origin);",
		fmt.Sprintf("dfmount start to live mount %.2fs, first open %s (neither in the reads);", rep.MountSetup, fmtMs(rep.MountFirstOpen)),
		"each read at a random page-aligned offset in a piece no other read touches; every fd POSIX_FADV_RANDOM (no readahead);",
		fmt.Sprintf("cold cache: %s (local file %s resident before its reads).", rep.Evict, fmtPct(rep.LocalResident)))

	seq := &Table{Title: fmt.Sprintf("dfmount: sequential read of the whole %s file (1 MiB read calls)", fmtMiB(rep.Config.FileSize)),
		Header: []string{"read", "n", "time", "min-max", "1st cold", "MiB/s", "vs local cold", "vs local warm", "vs dfget", "cached before", "origin",
			"peer CPU", "supernode CPU", "dfbench CPU", "machine busy"}}
	lc, lw, dg := rep.SeqRow(SeqLocalCold), rep.SeqRow(SeqLocalWarm), rep.SeqRow(SeqDfget)
	rel := func(r, base *SeqRead) string {
		if base == nil || r.MiBps <= 0 {
			return "-"
		}
		return fmtRatio(r.MiBps / base.MiBps)
	}
	cpu := func(v float64, ok bool) string {
		if !ok {
			return "-"
		}
		return fmtSec(v)
	}
	for i := range rep.Seq {
		r := &rep.Seq[i]
		origin := "-"
		if r.OriginBytes >= 0 {
			origin = fmtMiB(r.OriginBytes)
		}
		peer, okPeer := r.CPU.Procs["peer"]
		sn, okSN := r.CPU.Procs["supernode"]
		spread := "-"
		if len(r.Samples) > 1 {
			lo, hi := r.Samples[0], r.Samples[0]
			for _, x := range r.Samples {
				lo, hi = math.Min(lo, x), math.Max(hi, x)
			}
			spread = fmt.Sprintf("%.2f-%.2fs", lo, hi)
		}
		first := "-"
		if len(r.FirstSamples) > 0 {
			first = fmtSec(median(r.FirstSamples))
		}
		seq.AddRow(r.Name, len(r.Samples), fmtSec(r.Seconds), spread, first, fmt.Sprintf("%.0f", r.MiBps), rel(r, lc), rel(r, lw), rel(r, dg),
			fmtPct(r.Resident), origin, cpu(peer, okPeer), cpu(sn, okSN), fmtSec(r.CPU.Bench), fmtPct(r.CPU.Busy))
	}
	seq.Notes = append(seq.Notes,
		"n: repetitions, interleaved (time: median); vs columns: throughput relative to that row (< 1: slower);",
		"dfget: process start to exit, output written to disk, fresh supernode (the seed fetches the whole file from the origin);",
		"mount cold: fresh supernode, data dir and mount; time of the reads only (prefetch off: lazy seed, only the pieces read are fetched);",
		"mount complete: the prefetch-off mount after its cold read, file reopened (passthrough where the kernel has it);",
		"mount's store file: the complete mount's backing data file read directly, no FUSE (control for the complete-mount rows);",
		"re-reads (local disk, mount complete, store file) are timed after an untimed read of the same file; cold: caches emptied before",
		"  both; 1st cold: median of those untimed first cold reads, which on this VM may pay for page-cache memory the host took back",
		"  (virtio-balloon free page reporting, up to ~1.5 ms CPU per MiB) — shown, not used;",
		"cached before: share of the backing file (local file, or the mount's store) in this machine's page cache before the (last) read;",
		"CPU: of the (last) read; peer: dfmount or dfget; dfbench: this process (origin server, the reader); machine busy: all cores.")
	return []*Table{ttfb, seq}
}

// PlotMountTTFB draws the CDF of the random-read latencies (log time axis)
// and writes a PNG.
func PlotMountTTFB(rep *MountReport, path string) error {
	if len(rep.TTFB) == 0 {
		return errors.New("no random reads")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Time to first byte: %d random %d-byte reads, cold %s file",
		len(rep.Offsets), rep.Config.ReadSize, fmtMiB(rep.Config.FileSize))
	p.X.Label.Text = "read latency (ms, log scale)"
	p.Y.Label.Text = "fraction of reads done"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	// Room on the right for the legend.
	p.Legend.Top = false
	p.Legend.Left = false
	hi := 0.0
	for _, r := range rep.TTFB {
		for _, x := range r.Latency {
			hi = math.Max(hi, x*1000)
		}
	}
	if hi > 0 {
		p.X.Max = 40 * hi
	}
	p.Add(plotter.NewGrid())
	for i, r := range rep.TTFB {
		if len(r.Latency) == 0 {
			continue
		}
		xs := append([]float64(nil), r.Latency...)
		sort.Float64s(xs)
		xys := make(plotter.XYs, 0, 2*len(xs))
		for k, x := range xs {
			ms := math.Max(x*1000, 1e-3)
			xys = append(xys, plotter.XY{X: ms, Y: float64(k) / float64(len(xs))}, plotter.XY{X: ms, Y: float64(k+1) / float64(len(xs))})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color, l.Width = plotutil.Color(i), vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(r.Name, l)
	}
	return p.Save(20*vg.Centimeter, 14*vg.Centimeter, path)
}

// PlotMountSeq draws the sequential read throughputs as bars (log scale:
// warm page-cache reads are orders of magnitude faster) and writes a PNG.
func PlotMountSeq(rep *MountReport, path string) error {
	if len(rep.Seq) == 0 {
		return errors.New("no sequential reads")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Sequential read of a %s file (higher is better)", fmtMiB(rep.Config.FileSize))
	p.Y.Label.Text = "MiB/s (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	var names []string
	lo, hi := math.Inf(1), 0.0
	for _, r := range rep.Seq {
		v := math.Max(r.MiBps, 1)
		names = append(names, strings.ReplaceAll(r.Name, ", ", "\n"))
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	// A log axis has no 0: the bars stand on an undrawn base at the axis
	// minimum.
	floor := math.Pow(10, math.Floor(math.Log10(lo/2)))
	base := make(plotter.Values, len(rep.Seq))
	vals := make(plotter.Values, len(rep.Seq))
	for i, r := range rep.Seq {
		base[i], vals[i] = floor, math.Max(r.MiBps, 1)-floor
	}
	under, err := plotter.NewBarChart(base, vg.Points(36))
	if err != nil {
		return err
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(36))
	if err != nil {
		return err
	}
	bars.StackOn(under)
	bars.Color = plotutil.Color(0)
	p.Add(plotter.NewGrid(), bars)
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = floor, 2*hi
	return p.Save(26*vg.Centimeter, 13*vg.Centimeter, path)
}
