package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// ContainerConfig configures the df-snapshotter scenario.
type ContainerConfig struct {
	// BigSize is the size of the random file /data/big in the image.
	BigSize int64 `json:"bigSize"`
	// Reps is how many times the lazy and the full measurement are made,
	// alternately, each on fresh hosts; medians are reported (default 5).
	Reps int `json:"reps"`
	// MinChunkSize is the `dfctl image convert --min-chunk-size` of a
	// second eStargz image that both snapshotters also start, in the same
	// repetitions (0: 64 KiB; negative: no second image).
	MinChunkSize int64 `json:"minChunkSize"`
	// Timeout bounds one pull or run (0: 10 minutes).
	Timeout time.Duration `json:"timeoutNs"`
}

// ContainerRun is one way of starting the image (lazy or full pull).
// Times in seconds; a run's time is until the script's output appeared.
type ContainerRun struct {
	// Pull is `dfctl image pull` (lazy) or `ctr image pull` (full), to exit.
	Pull float64 `json:"pullSec"`
	// Run is `ctr run --rm IMAGE ID sh /read.sh` until its output, RunExit
	// until ctr exited (container removed).
	Run     float64 `json:"runSec"`
	RunExit float64 `json:"runExitSec"`
	// Start is Pull + Run: the cold start.
	Start float64 `json:"startSec"`
	// StartEgress is the registry's blob bytes for pull and run,
	// StartBlobGets its blob GET requests.
	StartEgress   int64 `json:"startEgressBytes"`
	StartBlobGets int64 `json:"startBlobGets"`
	// Read is `ctr run ... sh -c 'cat /data/big | sha256sum'` until its
	// output, the first time (lazy: a cold read through the FUSE layer);
	// ReadEgress the registry's blob bytes meanwhile.
	Read         float64 `json:"readSec"`
	ReadEgress   int64   `json:"readEgressBytes"`
	ReadBlobGets int64   `json:"readBlobGets"`
	// ReadAgain is the same read once more (content local, caches warm).
	ReadAgain float64 `json:"readAgainSec"`
	// PullCPU and ReadCPU are what the pull and the cold read cost, by
	// process ("client" is dfctl or ctr).
	PullCPU CPUUse `json:"pullCpu"`
	ReadCPU CPUUse `json:"readCpu"`
}

// ContainerReport is the df-snapshotter scenario's result.
type ContainerReport struct {
	Config ContainerConfig `json:"config"`
	// PlainBytes and EsgzBytes are the blob bytes (config and layers) of the
	// plain image and of its eStargz conversion.
	PlainBytes int64 `json:"plainBytes"`
	EsgzBytes  int64 `json:"esgzBytes"`
	// Convert is how long `dfctl image convert` took (setup, not measured
	// against anything).
	Convert float64 `json:"convertSec"`
	// Lazy and Full are the field-wise medians of LazyReps and FullReps
	// (CPU: of the repetition whose read time is the median).
	Lazy     ContainerRun   `json:"lazy"`
	Full     ContainerRun   `json:"full"`
	LazyReps []ContainerRun `json:"lazyReps"`
	FullReps []ContainerRun `json:"fullReps"`
	// StartSpeedup is Full.Start / Lazy.Start.
	StartSpeedup float64 `json:"startSpeedup"`
	// FullPullPlusRead is Full.Pull + Full.Read; ReadRatio is Lazy.Read
	// over it.
	FullPullPlusRead float64  `json:"fullPullPlusReadSec"`
	ReadRatio        float64  `json:"readRatio"`
	Targets          []Target `json:"targets"`
	// SideBySide compares with stargz-snapshotter (issue 13's table).
	SideBySide *SideBySide `json:"sideBySide,omitempty"`
	// FirstMiBRatio is df-snapshotter's time to the container's first MiB
	// (start: pull + run to the script's output) with background fetch on
	// (SideBySide.Damselfly, defaults) over off (Lazy).
	FirstMiBRatio float64 `json:"firstMiBRatio"`
	// MinChunk is the second image, converted with --min-chunk-size.
	MinChunk *MinChunkRuns `json:"minChunk,omitempty"`
}

// MinChunkRuns are the runs of the image converted with --min-chunk-size
// (small files share gzip streams): df-snapshotter and stargz-snapshotter
// with their defaults, then with the background fetch off.
type MinChunkRuns struct {
	MinChunkSize int64 `json:"minChunkSize"`
	// Ref is the image; EsgzBytes its blob bytes; Convert how long
	// `dfctl image convert` took.
	Ref       string  `json:"ref"`
	EsgzBytes int64   `json:"esgzBytes"`
	Convert   float64 `json:"convertSec"`
	// SideBySide holds df-snapshotter with defaults and stargz-snapshotter
	// with defaults and with -no-background-fetch; Lazy is df-snapshotter
	// with --background-fetch=false. Medians of the reps.
	SideBySide SideBySide     `json:"sideBySide"`
	Lazy       ContainerRun   `json:"lazy"`
	LazyReps   []ContainerRun `json:"lazyReps"`
	// FirstMiBRatio is as ContainerReport's, for this image.
	FirstMiBRatio float64 `json:"firstMiBRatio"`
	// Error is why the image's runs stopped (the first image's runs go
	// on): a layer not mounted lazily, a failed start.
	Error string `json:"error,omitempty"`
}

// report is a ContainerReport of this image's runs, with full (the plain
// image, which has no min-chunk variant) from the main one, for
// SideBySideTargets and SideBySideTable.
func (m *MinChunkRuns) report(main *ContainerReport) *ContainerReport {
	sb := m.SideBySide
	return &ContainerReport{Config: main.Config, Lazy: m.Lazy, Full: main.Full, SideBySide: &sb}
}

// label names the image in targets and tables.
func (m *MinChunkRuns) label() string {
	return fmt.Sprintf("--min-chunk-size %d image", m.MinChunkSize)
}

// containerReadScript is the image's /read.sh: read 1 MiB of the big file.
const containerReadScript = "#!/bin/sh\nhead -c 1048576 /data/big | sha256sum\n"

// containerBigSeed is the seed of /data/big's random content.
const containerBigSeed = 31

// RunContainer measures df-snapshotter's lazy start against a full pull.
// The image is busybox, a BigSize random file /data/big and /read.sh
// (which hashes the file's first MiB), built with umoci and pushed plain
// to a local docker-registry, then converted with `dfctl image convert
// --compression-level 1 --prioritized-files /bin/busybox,/read.sh`.
//
// Lazy: a fresh supernode and a fresh host (df-snapshotter with
// --background-fetch=false, a private containerd with it as proxy plugin);
// `dfctl image pull` then `ctr run --rm --snapshotter damselfly IMAGE ID
// sh /read.sh`, timed to the script's output; then the whole big file is
// read (`cat /data/big | sha256sum`), cold, then once more.
//
// Full: a fresh containerd without the snapshotter (overlayfs); `ctr
// image pull --plain-http` of the plain image, then the same runs.
//
// Side by side (each repetition): df-snapshotter with its defaults and
// stargz-snapshotter v0.15.1 with its defaults and with the background
// fetch off (runSideBySide). Unless MinChunkSize < 0, the image is also
// converted with --min-chunk-size (small files share gzip streams) and
// both snapshotters start that one too, defaults first, then with the
// background fetch off; a failure there stops only that image's runs.
//
// Registry blob egress is counted for each step.
func RunContainer(ctx context.Context, env *Env, cfg ContainerConfig) (*ContainerReport, error) {
	if cfg.BigSize <= 0 {
		cfg.BigSize = 256 * MiB
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Reps <= 0 {
		cfg.Reps = 5
	}
	if cfg.MinChunkSize == 0 {
		cfg.MinChunkSize = 64 << 10
	}
	rep := &ContainerReport{Config: cfg}
	for _, bin := range []string{testenv.ContainerdBin, testenv.CtrBin, testenv.RegistryBin, testenv.BusyboxBin} {
		if _, err := os.Stat(bin); err != nil {
			return rep, fmt.Errorf("container: %w", err)
		}
	}
	tb, closeScope, err := env.Scope()
	if err != nil {
		return rep, err
	}
	defer closeScope()
	var reg *testenv.Registry
	var im *testenv.Image
	var plain, esgz string
	if err := guard(func() error {
		reg = testenv.StartRegistry(tb, testenv.RegistryOptions{})
		env.Logf("container: building the image (busybox + %s /data/big + /read.sh)", fmtMiB(cfg.BigSize))
		im = testenv.BuildImage(tb, testenv.ImageOptions{Files: []testenv.ImageFile{
			{Path: "/data/big", Random: cfg.BigSize, Seed: containerBigSeed},
			{Path: "/read.sh", Data: []byte(containerReadScript)},
		}})
		plain = reg.Addr + "/bench/app:plain"
		esgz = reg.Addr + "/bench/app:esgz"
		im.Push(tb, plain)
		return nil
	}); err != nil {
		return rep, err
	}
	rep.PlainBytes = im.BlobBytes()
	env.Logf("container: converting to eStargz")
	start := time.Now()
	if out, err := runCmd(ctx, cfg.Timeout, filepath.Join(env.BinDir, "dfctl"), "image", "convert", "--compression-level", "1",
		"--prioritized-files", "/bin/busybox,/read.sh", plain, esgz); err != nil {
		return rep, fmt.Errorf("dfctl image convert: %w\n%s", err, lastLinesOf(out, 20))
	}
	rep.Convert = time.Since(start).Seconds()
	if rep.EsgzBytes, err = manifestBlobBytes(ctx, reg, "bench/app", "esgz"); err != nil {
		return rep, fmt.Errorf("esgz manifest: %w", err)
	}
	if cfg.MinChunkSize > 0 {
		mc := &MinChunkRuns{MinChunkSize: cfg.MinChunkSize, Ref: reg.Addr + "/bench/app:esgz-minchunk"}
		env.Logf("container: converting to eStargz with --min-chunk-size %d", cfg.MinChunkSize)
		start := time.Now()
		if out, err := runCmd(ctx, cfg.Timeout, filepath.Join(env.BinDir, "dfctl"), "image", "convert", "--compression-level", "1",
			"--prioritized-files", "/bin/busybox,/read.sh", "--min-chunk-size", fmt.Sprint(cfg.MinChunkSize), plain, mc.Ref); err != nil {
			return rep, fmt.Errorf("dfctl image convert --min-chunk-size: %w\n%s", err, lastLinesOf(out, 20))
		}
		mc.Convert = time.Since(start).Seconds()
		if mc.EsgzBytes, err = manifestBlobBytes(ctx, reg, "bench/app", "esgz-minchunk"); err != nil {
			return rep, fmt.Errorf("esgz-minchunk manifest: %w", err)
		}
		mc.SideBySide.StargzVersion = testenv.StargzVersion
		rep.MinChunk = mc
	}
	firstMiB := randomPrefixSHA(cfg.BigSize, containerBigSeed, 1<<20)
	whole := im.FileSHA256["/data/big"]

	rep.SideBySide = &SideBySide{StargzVersion: testenv.StargzVersion}
	for i := 0; i < cfg.Reps; i++ {
		env.Logf("container: repetition %d of %d", i+1, cfg.Reps)
		var lazy, full ContainerRun
		if err := runLazy(ctx, env, cfg, &lazy, reg, esgz, firstMiB, whole); err != nil {
			return rep, fmt.Errorf("lazy: %w", err)
		}
		rep.LazyReps = append(rep.LazyReps, lazy)
		if err := runSideBySide(ctx, env, cfg, rep.SideBySide, reg, esgz, firstMiB, whole); err != nil {
			return rep, fmt.Errorf("side by side: %w", err)
		}
		if err := runFull(ctx, env, cfg, &full, reg, plain, firstMiB, whole); err != nil {
			return rep, fmt.Errorf("full: %w", err)
		}
		rep.FullReps = append(rep.FullReps, full)
		if mc := rep.MinChunk; mc != nil && mc.Error == "" {
			mc.SideBySide.StargzError = rep.SideBySide.StargzError
			if err := runMinChunk(ctx, env, cfg, mc, reg, firstMiB, whole); err != nil {
				mc.Error = err.Error()
				env.Logf("container: %s: no further runs: %v", mc.label(), err)
			}
		}
	}
	rep.Lazy, rep.Full = medianRun(rep.LazyReps), medianRun(rep.FullReps)
	rep.StartSpeedup = rep.Full.Start / rep.Lazy.Start
	rep.FullPullPlusRead = rep.Full.Pull + rep.Full.Read
	rep.ReadRatio = rep.Lazy.Read / rep.FullPullPlusRead
	sb := rep.SideBySide
	sb.Damselfly, sb.Stargz, sb.StargzNoBG = medianRun(sb.DamselflyReps), medianRun(sb.StargzReps), medianRun(sb.StargzNoBGReps)
	rep.FirstMiBRatio = sb.Damselfly.Start / rep.Lazy.Start
	if mc := rep.MinChunk; mc != nil {
		msb := &mc.SideBySide
		msb.Damselfly, msb.Stargz, msb.StargzNoBG = medianRun(msb.DamselflyReps), medianRun(msb.StargzReps), medianRun(msb.StargzNoBGReps)
		mc.Lazy = medianRun(mc.LazyReps)
		mc.FirstMiBRatio = msb.Damselfly.Start / mc.Lazy.Start
	}
	rep.Targets = append(ContainerTargets(rep), Issue13Targets(rep)...)
	return rep, nil
}

// runMinChunk makes one repetition of the --min-chunk-size image's runs:
// both snapshotters with their defaults, then df-snapshotter with the
// background fetch off (stargz-snapshotter's is in runSideBySide).
func runMinChunk(ctx context.Context, env *Env, cfg ContainerConfig, mc *MinChunkRuns, reg *testenv.Registry, firstMiB, whole string) error {
	env.Logf("container: %s", mc.label())
	if err := runSideBySide(ctx, env, cfg, &mc.SideBySide, reg, mc.Ref, firstMiB, whole); err != nil {
		return err
	}
	var lazy ContainerRun
	if err := runRemote(ctx, env, cfg, &lazy, reg, mc.Ref, firstMiB, whole, damselflyVariant("minchunk-lazy", "--background-fetch=false")); err != nil {
		return fmt.Errorf("df-snapshotter without background fetch: %w", err)
	}
	mc.LazyReps = append(mc.LazyReps, lazy)
	return nil
}

// Issue13Targets are issue 13's targets, each printed met or not met: the
// side-by-side ones (SideBySideTargets) and the time to the container's
// first MiB with background fetch on against off, for the default image
// and, labelled, for the --min-chunk-size one.
func Issue13Targets(rep *ContainerReport) []Target {
	out := issue13Targets("", rep, rep.FirstMiBRatio)
	if mc := rep.MinChunk; mc != nil {
		for _, t := range issue13Targets(mc.label()+": ", mc.report(rep), mc.FirstMiBRatio) {
			if mc.Error != "" {
				t.Note = strings.TrimSpace(t.Note + " runs stopped early: " + firstLine(mc.Error, 200))
			}
			out = append(out, t)
		}
	}
	return out
}

func issue13Targets(prefix string, rep *ContainerReport, firstMiB float64) []Target {
	var out []Target
	sb := rep.SideBySide
	if ts := SideBySideTargets(rep); len(ts) > 0 {
		out = append(out, ts...)
	} else {
		why := "no stargz-snapshotter runs"
		if sb != nil && sb.StargzError != "" {
			why = "stargz-snapshotter not measured: " + firstLine(sb.StargzError, 200)
		}
		out = append(out, Target{Name: "issue 13's targets against stargz-snapshotter (cold start, registry bytes, whole-file read)",
			Measured: "-", Note: why})
	}
	if sb != nil && len(sb.DamselflyReps) > 0 {
		t := AtMost("time to the container's first MiB with background fetch on at most 1.2x of off (df-snapshotter, pull + run to output)",
			firstMiB, 1.2, "%.2fx")
		t.Measured = fmt.Sprintf("%.2fx (%.2fs vs %.2fs; run alone %.2fs vs %.2fs)", firstMiB, sb.Damselfly.Start, rep.Lazy.Start,
			sb.Damselfly.Run, rep.Lazy.Run)
		out = append(out, t)
	}
	for i := range out {
		out[i].Name = prefix + out[i].Name
	}
	return out
}

// medianRun is the field-wise median of runs; CPU comes from the run
// whose read time is nearest the median.
func medianRun(runs []ContainerRun) ContainerRun {
	if len(runs) == 0 {
		return ContainerRun{}
	}
	med := func(f func(ContainerRun) float64) float64 {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = f(r)
		}
		return median(xs)
	}
	var m ContainerRun
	m.Pull = med(func(r ContainerRun) float64 { return r.Pull })
	m.Run = med(func(r ContainerRun) float64 { return r.Run })
	m.RunExit = med(func(r ContainerRun) float64 { return r.RunExit })
	m.Start = med(func(r ContainerRun) float64 { return r.Start })
	m.StartEgress = int64(med(func(r ContainerRun) float64 { return float64(r.StartEgress) }))
	m.Read = med(func(r ContainerRun) float64 { return r.Read })
	m.ReadEgress = int64(med(func(r ContainerRun) float64 { return float64(r.ReadEgress) }))
	m.StartBlobGets = int64(med(func(r ContainerRun) float64 { return float64(r.StartBlobGets) }))
	m.ReadBlobGets = int64(med(func(r ContainerRun) float64 { return float64(r.ReadBlobGets) }))
	m.ReadAgain = med(func(r ContainerRun) float64 { return r.ReadAgain })
	best := 0
	for i, r := range runs {
		if math.Abs(r.Read-m.Read) < math.Abs(runs[best].Read-m.Read) {
			best = i
		}
	}
	m.PullCPU, m.ReadCPU = runs[best].PullCPU, runs[best].ReadCPU
	return m
}

func runLazy(ctx context.Context, env *Env, cfg ContainerConfig, r *ContainerRun, reg *testenv.Registry, ref, firstMiB, whole string) error {
	return runRemote(ctx, env, cfg, r, reg, ref, firstMiB, whole, damselflyVariant("lazy", "--background-fetch=false"))
}

// remoteVariant is a remote snapshotter set-up the container scenario
// measures: df-snapshotter or stargz-snapshotter, with some options.
type remoteVariant struct {
	// name labels logs and container IDs; snapshotter is the containerd
	// snapshotter name.
	name, snapshotter string
	// supernode: the variant reads through a fresh supernode.
	supernode bool
	// start starts the snapshotter and a containerd using it.
	start func(ctx context.Context, tb testenv.TB, env *Env, supernode string) (*testenv.Containerd, *testenv.Proc, error)
	// mounted is the snapshotter's log line of a lazily mounted layer
	// ("": not checked); refused the one of a layer it could not mount
	// lazily (then the run is an error: it measured a full pull).
	mounted, refused string
	// pull is the pull command (default: dfctl image pull).
	pull func(env *Env, c *testenv.Containerd, ref string) (string, []string)
}

func damselflyVariant(name string, args ...string) remoteVariant {
	return remoteVariant{name: name, snapshotter: "damselfly", supernode: true, mounted: "layer mounted lazily",
		start: func(ctx context.Context, tb testenv.TB, env *Env, sn string) (*testenv.Containerd, *testenv.Proc, error) {
			return startLazyHost(ctx, tb, env, sn, args...)
		}}
}

func runRemote(ctx context.Context, env *Env, cfg ContainerConfig, r *ContainerRun, reg *testenv.Registry, ref, firstMiB, whole string, v remoteVariant) error {
	tb, closeScope, err := env.Scope()
	if err != nil {
		return err
	}
	defer closeScope()
	var c *testenv.Containerd
	var snap *testenv.Proc
	var sn *testenv.Supernode
	if err := guard(func() error {
		addr := ""
		if v.supernode {
			sn = testenv.StartSupernode(tb, env.BinDir, append([]string{"--log-level", "warn"}, testenv.AllowOrigins(reg.Addr)...)...)
			addr = sn.Addr
		}
		var err error
		c, snap, err = v.start(ctx, tb, env, addr)
		return err
	}); err != nil {
		return err
	}
	pids := map[string]int{v.snapshotter + "-snapshotter": snap.Pid(), "registry": reg.Proc.Pid(), "containerd": c.Proc.Pid()}
	if sn != nil {
		pids["supernode"] = sn.Proc.Pid()
	}
	fail := func(err error) error { return fmt.Errorf("%w\n%s snapshotter:\n%s", err, v.name, snap.Tail(20)) }
	syscall.Sync()
	reg.ResetCounters()
	env.Logf("container: %s pull + run", v.name)
	span := startSpan(pids)
	pullName, pullArgs := filepath.Join(env.BinDir, "dfctl"), []string{"image", "pull",
		"--address", c.Sock, "--namespace", c.Namespace, "--snapshotter", v.snapshotter, "--plain-http", ref}
	if v.pull != nil {
		pullName, pullArgs = v.pull(env, c, ref)
	}
	pull, err := timeCmd(ctx, cfg.Timeout, "", pullName, pullArgs...)
	if err != nil {
		return fail(err)
	}
	r.PullCPU = span.stop()
	r.PullCPU.Procs["client"] = pull.CPU
	run, err := timeCmd(ctx, cfg.Timeout, firstMiB, testenv.CtrBin, ctrArgs(c, "run", "--rm", "--snapshotter", v.snapshotter,
		ref, v.name+"-start", "sh", "/read.sh")...)
	if err != nil {
		return fail(err)
	}
	r.Pull, r.Run, r.RunExit = pull.Exit, run.Output, run.Exit
	r.Start = r.Pull + r.Run
	r.StartEgress, r.StartBlobGets = reg.BlobBytes(), reg.BlobGets()
	if v.mounted != "" && !strings.Contains(snap.Log(), v.mounted) {
		return fail(errors.New("no layer was mounted lazily"))
	}
	if v.refused != "" && strings.Contains(snap.Log(), v.refused) {
		return fail(errors.New("a layer was not mounted lazily"))
	}
	env.Logf("container: %s start %.2fs (pull %.2fs, run %.2fs), registry sent %s", v.name, r.Start, r.Pull, r.Run, fmtMiB(r.StartEgress))

	reg.ResetCounters()
	span = startSpan(pids)
	read, err := timeCmd(ctx, cfg.Timeout, whole, testenv.CtrBin, ctrArgs(c, "run", "--rm", "--snapshotter", v.snapshotter,
		ref, v.name+"-read", "sh", "-c", "cat /data/big | sha256sum")...)
	if err != nil {
		return fail(err)
	}
	r.ReadCPU = span.stop()
	r.ReadCPU.Procs["client"] = read.CPU
	r.Read, r.ReadEgress, r.ReadBlobGets = read.Output, reg.BlobBytes(), reg.BlobGets()
	env.Logf("container: %s whole-file read %.2fs, registry sent %s", v.name, r.Read, fmtMiB(r.ReadEgress))
	again, err := timeCmd(ctx, cfg.Timeout, whole, testenv.CtrBin, ctrArgs(c, "run", "--rm", "--snapshotter", v.snapshotter,
		ref, v.name+"-read2", "sh", "-c", "cat /data/big | sha256sum")...)
	if err != nil {
		return fail(err)
	}
	r.ReadAgain = again.Output
	return nil
}

func runFull(ctx context.Context, env *Env, cfg ContainerConfig, r *ContainerRun, reg *testenv.Registry, ref, firstMiB, whole string) error {
	tb, closeScope, err := env.Scope()
	if err != nil {
		return err
	}
	defer closeScope()
	var c *testenv.Containerd
	if err := guard(func() error {
		c = startContainerd(tb, testenv.ContainerdOptions{})
		return nil
	}); err != nil {
		return err
	}
	pids := map[string]int{"registry": reg.Proc.Pid(), "containerd": c.Proc.Pid()}
	syscall.Sync()
	reg.ResetCounters()
	env.Logf("container: full pull + run")
	span := startSpan(pids)
	pull, err := timeCmd(ctx, cfg.Timeout, "", testenv.CtrBin, ctrArgs(c, "image", "pull", "--plain-http", ref)...)
	if err != nil {
		return err
	}
	r.PullCPU = span.stop()
	r.PullCPU.Procs["client"] = pull.CPU
	run, err := timeCmd(ctx, cfg.Timeout, firstMiB, testenv.CtrBin, ctrArgs(c, "run", "--rm", ref, "full-start", "sh", "/read.sh")...)
	if err != nil {
		return err
	}
	r.Pull, r.Run, r.RunExit = pull.Exit, run.Output, run.Exit
	r.Start = r.Pull + r.Run
	r.StartEgress, r.StartBlobGets = reg.BlobBytes(), reg.BlobGets()
	env.Logf("container: full start %.2fs (pull %.2fs, run %.2fs), registry sent %s", r.Start, r.Pull, r.Run, fmtMiB(r.StartEgress))
	reg.ResetCounters()
	span = startSpan(pids)
	read, err := timeCmd(ctx, cfg.Timeout, whole, testenv.CtrBin, ctrArgs(c, "run", "--rm", ref, "full-read", "sh", "-c", "cat /data/big | sha256sum")...)
	if err != nil {
		return err
	}
	r.ReadCPU = span.stop()
	r.ReadCPU.Procs["client"] = read.CPU
	r.Read, r.ReadEgress, r.ReadBlobGets = read.Output, reg.BlobBytes(), reg.BlobGets()
	env.Logf("container: full whole-file read %.2fs", r.Read)
	again, err := timeCmd(ctx, cfg.Timeout, whole, testenv.CtrBin, ctrArgs(c, "run", "--rm", ref, "full-read2", "sh", "-c", "cat /data/big | sha256sum")...)
	if err != nil {
		return err
	}
	r.ReadAgain = again.Output
	return nil
}

// startLazyHost starts df-snapshotter (embedded peer, extra flags) and a
// private containerd using it as the "damselfly" proxy snapshotter. At
// scope close, after both are killed, the FUSE layers are detached and the
// host's directory removed.
func startLazyHost(ctx context.Context, tb testenv.TB, env *Env, supernode string, extra ...string) (*testenv.Containerd, *testenv.Proc, error) {
	dir, err := os.MkdirTemp("", "dfsn") // short: unix socket paths are limited
	if err != nil {
		return nil, nil, err
	}
	tb.Cleanup(func() {
		for _, m := range mountsBelow(dir) {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
		if env.Keep {
			env.Logf("keeping %s", dir)
			return
		}
		if left := mountsBelow(dir); len(left) > 0 {
			env.Logf("not removing %s: still mounted: %v", dir, left)
			return
		}
		os.RemoveAll(dir)
	})
	sock := filepath.Join(dir, "s.sock")
	args := append([]string{"--root", filepath.Join(dir, "snap"), "--address", sock, "--supernode", supernode,
		"--no-daemon", "--upload-listen", "127.0.0.1:0"}, extra...)
	snap := testenv.Start(tb, env.BinDir, "df-snapshotter", args...)
	c, err := containerdWithSnapshotter(ctx, tb, "df-snapshotter", "damselfly", sock, snap)
	return c, snap, err
}

// startContainerd is testenv.StartContainerd, plus the removal, after its
// teardown, of the empty cgroups runc leaves for the namespace
// (/sys/fs/cgroup/*/NAMESPACE with cgroup v1, /sys/fs/cgroup/NAMESPACE
// with v2), which the teardown does not remove.
func startContainerd(tb testenv.TB, opts testenv.ContainerdOptions) *testenv.Containerd {
	var ns string
	// Registered first: runs after the containerd teardown.
	tb.Cleanup(func() {
		if ns == "" {
			return
		}
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", ns))
		for _, d := range dirs {
			syscall.Rmdir(d) // fails, harmlessly, unless it is an empty cgroup
		}
	})
	c := testenv.StartContainerd(tb, opts)
	ns = c.Namespace
	return c
}

// mountsBelow lists mount points strictly below dir, deepest first.
func mountsBelow(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func ctrArgs(c *testenv.Containerd, args ...string) []string {
	return append([]string{"-a", c.Sock, "-n", c.Namespace}, args...)
}

// runCmd runs a command to completion and returns its combined output.
func runCmd(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return string(out), nil
}

// cmdTiming is how long a command took: until want appeared in its output
// and until it exited, in seconds, and the CPU time it used itself.
type cmdTiming struct {
	Output, Exit, CPU float64
}

// timeCmd runs a command and times it; want "" means Output is Exit. A
// command that fails, or whose output lacks want, is an error.
func timeCmd(ctx context.Context, timeout time.Duration, want, name string, args ...string) (cmdTiming, error) {
	var t cmdTiming
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w := &watchWriter{want: []byte(want)}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = w, w
	w.start = time.Now()
	err := cmd.Run()
	t.Exit = time.Since(w.start).Seconds()
	if st := cmd.ProcessState; st != nil {
		t.CPU = (st.UserTime() + st.SystemTime()).Seconds()
	}
	out := w.String()
	what := filepath.Base(name) + " " + strings.Join(args, " ")
	if err != nil {
		return t, fmt.Errorf("%s: %w\n%s", what, err, lastLinesOf(out, 20))
	}
	if want == "" {
		t.Output = t.Exit
		return t, nil
	}
	at, ok := w.seenAt()
	if !ok {
		return t, fmt.Errorf("%s: output lacks %q:\n%s", what, want, lastLinesOf(out, 20))
	}
	t.Output = at
	return t, nil
}

// watchWriter collects output and notes when want first appears in it.
type watchWriter struct {
	want  []byte
	start time.Time

	mu   sync.Mutex
	buf  bytes.Buffer
	at   float64
	seen bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.seen && len(w.want) > 0 && bytes.Contains(w.buf.Bytes(), w.want) {
		w.seen, w.at = true, time.Since(w.start).Seconds()
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *watchWriter) seenAt() (float64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at, w.seen
}

func lastLinesOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// randomPrefixSHA is the hex SHA-256 of the first n bytes of testenv's
// random content for size and seed.
func randomPrefixSHA(size, seed, n int64) string {
	h := sha256.New()
	io.CopyN(h, testenv.RandomReader(size, seed), min(n, size))
	return hex.EncodeToString(h.Sum(nil))
}

// manifestBlobBytes sums the config and layer sizes of a manifest in reg.
func manifestBlobBytes(ctx context.Context, reg *testenv.Registry, name, tag string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.URL("/v2/"+name+"/manifests/"+tag), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET manifest %s:%s: %s", name, tag, resp.Status)
	}
	var m struct {
		Config testenv.Descriptor   `json:"config"`
		Layers []testenv.Descriptor `json:"layers"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&m); err != nil {
		return 0, err
	}
	if len(m.Layers) == 0 {
		return 0, errors.New("manifest has no layers")
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

// ContainerTargets checks the issue's goals: a lazy start at least 10x
// faster than a full pull, and the whole big file read through the lazy
// mount within 1.1x of full pull plus read.
func ContainerTargets(rep *ContainerReport) []Target {
	size := fmtMiB(rep.Config.BigSize)
	start := AtLeast(fmt.Sprintf("lazy start (pull + run to output) >= 10x faster than full pull + run, %s file", size),
		rep.StartSpeedup, 10, "%.2fx")
	start.Measured = fmt.Sprintf("%.2fx (%.2fs vs %.2fs)", rep.StartSpeedup, rep.Lazy.Start, rep.Full.Start)
	read := AtMost(fmt.Sprintf("whole-file read through the lazy mount within 1.1x of full pull plus read, %s", size),
		rep.ReadRatio, 1.1, "%.2fx")
	read.Measured = fmt.Sprintf("%.2fx (%.2fs vs %.2fs + %.2fs)", rep.ReadRatio, rep.Lazy.Read, rep.Full.Pull, rep.Full.Read)
	return []Target{start, read}
}

// ContainerTable renders a container report.
func ContainerTable(rep *ContainerReport) *Table {
	t := &Table{Title: fmt.Sprintf("df-snapshotter: cold start of busybox + %s file (plain image %s, eStargz %s)",
		fmtMiB(rep.Config.BigSize), fmtMiB(rep.PlainBytes), fmtMiB(rep.EsgzBytes)),
		Header: []string{"", "pull", "run", "start", "start egress", "(GETs)", "whole-file read", "read egress", "(GETs)", "pull + read", "read again"}}
	add := func(name string, r ContainerRun) {
		t.AddRow(name, fmtSec(r.Pull), fmtSec(r.Run), fmtSec(r.Start), fmtMiB(r.StartEgress), r.StartBlobGets,
			fmtSec(r.Read), fmtMiB(r.ReadEgress), r.ReadBlobGets, fmtSec(r.Pull+r.Read), fmtSec(r.ReadAgain))
	}
	if sb := rep.SideBySide; sb != nil && len(sb.DamselflyReps) > 0 {
		add("df-snapshotter, defaults", sb.Damselfly)
		if len(sb.StargzReps) > 0 {
			add("stargz-snapshotter "+sb.StargzVersion+", defaults", sb.Stargz)
			add("stargz-snapshotter, no background fetch", sb.StargzNoBG)
		}
	}
	add("lazy (df-snapshotter)", rep.Lazy)
	add("full pull (overlayfs)", rep.Full)
	if mc := rep.MinChunk; mc != nil && len(mc.SideBySide.DamselflyReps) > 0 {
		msb := mc.SideBySide
		add(mc.label()+": df-snapshotter, defaults", msb.Damselfly)
		if len(msb.StargzReps) > 0 {
			add(mc.label()+": stargz-snapshotter, defaults", msb.Stargz)
		}
		if len(mc.LazyReps) > 0 {
			add(mc.label()+": df-snapshotter, no background fetch", mc.Lazy)
		}
		if len(msb.StargzNoBGReps) > 0 {
			add(mc.label()+": stargz-snapshotter, no background fetch", msb.StargzNoBG)
		}
	}
	t.AddRow("full/lazy", fmtRatio(rep.Full.Pull/rep.Lazy.Pull), fmtRatio(rep.Full.Run/rep.Lazy.Run), fmtRatio(rep.StartSpeedup), "", "",
		fmtRatio(rep.Full.Read/rep.Lazy.Read), "", "", fmtRatio(rep.FullPullPlusRead/rep.Lazy.Read), fmtRatio(rep.Full.ReadAgain/rep.Lazy.ReadAgain))
	if len(rep.LazyReps) > 1 {
		for i := range rep.LazyReps {
			add(fmt.Sprintf("lazy, rep %d", i+1), rep.LazyReps[i])
		}
		for i := range rep.FullReps {
			add(fmt.Sprintf("full, rep %d", i+1), rep.FullReps[i])
		}
	}
	if rep.FirstMiBRatio > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("time to the container's first MiB (start), df-snapshotter, background fetch on/off: %s (%s vs %s)",
			fmtRatio(rep.FirstMiBRatio), fmtSec(rep.SideBySide.Damselfly.Start), fmtSec(rep.Lazy.Start)))
	}
	if mc := rep.MinChunk; mc != nil {
		t.Notes = append(t.Notes, fmt.Sprintf("%s: %s (dfctl image convert --min-chunk-size %d took %.2fs), %d repetitions",
			mc.label(), fmtMiB(mc.EsgzBytes), mc.MinChunkSize, mc.Convert, len(mc.SideBySide.DamselflyReps)))
		if mc.FirstMiBRatio > 0 && len(mc.LazyReps) > 0 {
			t.Notes = append(t.Notes, fmt.Sprintf("%s: time to the container's first MiB, df-snapshotter, background fetch on/off: %s (%s vs %s)",
				mc.label(), fmtRatio(mc.FirstMiBRatio), fmtSec(mc.SideBySide.Damselfly.Start), fmtSec(mc.Lazy.Start)))
		}
		if mc.Error != "" {
			t.Notes = append(t.Notes, mc.label()+": runs stopped: "+firstLine(mc.Error, 200))
		}
	}
	t.Notes = append(t.Notes,
		fmt.Sprintf("rows above full/lazy: medians of %d repetitions (each: lazy, df-snapshotter and stargz-snapshotter defaults, stargz without background fetch, full, then the --min-chunk-size image's runs; fresh supernode and hosts each), then each repetition;", len(rep.LazyReps)),
		"pull: lazy `dfctl image pull --snapshotter damselfly` (fresh supernode and host; \"lazy\" rows --background-fetch=false, \"defaults\" rows as shipped), full `ctr image pull`, to exit;",
		"run: `ctr run --rm IMAGE ID sh /read.sh` (sha256 of the first MiB of /data/big) until its output; start = pull + run;",
		"whole-file read: `ctr run --rm ... sh -c 'cat /data/big | sha256sum'` until its output (lazy: cold, through FUSE); read again: the same once more;",
		"egress: registry blob bytes (config and layers); GETs: blob GET requests (lazy: Range requests of the supernode's seed);",
		"CPU, lazy pull: "+fmtCPU(rep.Lazy.PullCPU),
		"CPU, full pull: "+fmtCPU(rep.Full.PullCPU),
		"CPU, lazy cold read: "+fmtCPU(rep.Lazy.ReadCPU),
		"CPU, full read: "+fmtCPU(rep.Full.ReadCPU),
		fmt.Sprintf("image conversion (setup) took %.2fs.", rep.Convert))
	if sb := rep.SideBySide; sb != nil {
		if st := SideBySideTable(rep); st != nil {
			for _, row := range st.Rows {
				t.Notes = append(t.Notes, "side by side: "+strings.Join(row, " | "))
			}
			t.Notes = append(t.Notes, st.Notes...)
		}
	}
	if mc := rep.MinChunk; mc != nil && len(mc.SideBySide.DamselflyReps) > 0 {
		if st := SideBySideTable(mc.report(rep)); st != nil {
			for _, row := range st.Rows {
				t.Notes = append(t.Notes, "side by side, "+mc.label()+": "+strings.Join(row, " | "))
			}
		}
	}
	return t
}

// fmtCPU renders a CPU breakdown: each process, dfbench, and the machine
// with its busy share.
func fmtCPU(u CPUUse) string {
	names := make([]string, 0, len(u.Procs))
	for n := range u.Procs {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.2fs", n, u.Procs[n]))
	}
	parts = append(parts, fmt.Sprintf("dfbench %.2fs", u.Bench))
	return fmt.Sprintf("%s; machine %.2fs busy (%s of %d cores)", strings.Join(parts, ", "), u.Machine, fmtPct(u.Busy), runtime.NumCPU())
}

// PlotContainer draws the cold start and the whole-file read, lazy against
// full pull, as grouped bars, and writes a PNG.
func PlotContainer(rep *ContainerReport, path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("df-snapshotter vs full pull, busybox + %s file (lower is better)", fmtMiB(rep.Config.BigSize))
	p.Y.Label.Text = "seconds"
	w := vg.Points(30)
	lazy, err := plotter.NewBarChart(plotter.Values{rep.Lazy.Start, rep.Lazy.Read}, w)
	if err != nil {
		return err
	}
	full, err := plotter.NewBarChart(plotter.Values{rep.Full.Start, rep.FullPullPlusRead}, w)
	if err != nil {
		return err
	}
	lazy.Color, full.Color = plotutil.Color(0), plotutil.Color(1)
	lazy.Offset, full.Offset = -w/2, w/2
	p.Add(plotter.NewGrid(), lazy, full)
	p.Legend.Add("lazy (df-snapshotter)", lazy)
	p.Legend.Add("full pull", full)
	p.Legend.Top = true
	p.Legend.Left = false
	p.NominalX("cold start (pull + run to output)", "whole-file read (full: pull + read)")
	p.Y.Min, p.Y.Max = 0, 1.4*math.Max(math.Max(rep.Lazy.Start, rep.Lazy.Read), math.Max(rep.Full.Start, rep.FullPullPlusRead))
	return p.Save(16*vg.Centimeter, 11*vg.Centimeter, path)
}

// containerdWithSnapshotter waits (30 s at most) for the snapshotter process
// snap (called what in errors) to listen on sock, then starts a containerd
// with it as the proxy snapshotter plugin name.
func containerdWithSnapshotter(ctx context.Context, tb testenv.TB, what, name, sock string, snap *testenv.Proc) (*testenv.Containerd, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			break
		}
		if snap.Exited() {
			return nil, fmt.Errorf("%s exited:\n%s", what, snap.Tail(20))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: no socket at %s after 30s:\n%s", what, sock, snap.Tail(20))
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	return startContainerd(tb, testenv.ContainerdOptions{ExtraConfig: fmt.Sprintf(`
[proxy_plugins]
  [proxy_plugins.%s]
    type = "snapshot"
    address = %q
`, name, sock)}), nil
}
