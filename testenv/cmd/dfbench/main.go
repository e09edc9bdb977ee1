// Command dfbench runs Damselfly's benchmark scenarios with real processes on
// 127.0.0.1 (the target behind `make bench`):
//
//	go run ./testenv/cmd/dfbench [--quick] [--scenarios swarm,single,scheduler,mount,container,peers,dataset] [--out results/]
//
// swarm: N peers (1, 10, 25, 50, 100; --quick: 1, 5, 10) download one file
// at once through a fresh supernode from an origin capped at u_s, each peer
// capped at u (up) and d (down); completion against the Kumar–Ross bound,
// origin egress, and plain HTTP downloads for small N.
//
// single: one dfget of a 1 GiB file (--quick: 256 MiB) against curl, with a
// cold and a warm supernode.
//
// scheduler: 10,000 simulated peers register and report pieces against one
// supernode.
//
// mount: dfmount on a 2 GiB file (--quick: 512 MiB): time to first byte of
// random 4 KiB reads through a cold lazy mount against the local disk with
// a cold page cache (p50, p99), and sequential read throughput through a
// cold mount and after completion against dfget and the local disk.
//
// container: df-snapshotter: cold start (pull + run to the script's
// output) of busybox + a 256 MiB file, lazy (eStargz, FUSE) against a full
// pull, and the time to read the whole file lazily against full pull plus
// read; registry egress of each. Side by side with stargz-snapshotter
// v0.15.1 (built from its Go module), each with its defaults and with the
// background fetch off, on the image converted with defaults and on one
// converted with --min-chunk-size 65536; medians of 5; issue 13's targets.
//
// peers: side by side on loopback, curl, Damselfly, Dragonfly 1.0.6 and
// Kraken v0.1.4 (both built from their Go modules, cached under
// $HOME/.cache/damselfly/anchors): 10 clients at once on 64 MiB and 256 MiB,
// one client on 1 GiB (--quick: 16 MiB, 64 MiB, 256 MiB), with the ratios
// and targets of issue 15 and Damselfly's CPU seconds per GiB.
//
// dataset: object storage mounted as files (issue 18), side by side on a
// real SeaweedFS reached through a counting proxy: dfmount (s3:// object
// and prefix mounts, direct mode), s3fs and rclone mount (--vfs-cache-mode
// off), each with its defaults, and a plain S3 client as the baseline:
// time to mount, cold find of a 2,000-object tree in 3 levels, cold
// sequential read of a 1 GiB object, 200 cold random 4 KiB reads (p50,
// p99, store bytes), the 2,000 x 64 KiB files read by 8 workers, and 4
// mounts reading the tree at once (store bytes); --quick: 256 MiB object,
// 500 files.
//
// It prints a table per scenario and a line per target, writes
// OUT/<scenario>.json and PNG plots under OUT, and tears down every process
// and temporary directory at exit, also on failure, panic or SIGINT. The
// whole run is bounded by --timeout. The exit status is 1 when a scenario
// failed to run (or, with --strict, missed a target), 0 otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/testenv/bench"
)

// byteSize is a flag of bytes (or bytes/s) in ratelimit syntax: 16M, 1G, 512K.
type byteSize int64

// String returns the size in bytes.
func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

// Set parses a size such as 16M.
func (b *byteSize) Set(s string) error {
	v, err := ratelimit.Parse(s)
	if err != nil {
		return err
	}
	*b = byteSize(v)
	return nil
}

// intList is a flag of comma-separated positive integers.
type intList []int

// String returns the list comma-separated.
func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

// Set parses a comma-separated list.
func (l *intList) Set(s string) error {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return fmt.Errorf("want positive integers, got %q", f)
		}
		out = append(out, v)
	}
	*l = out
	return nil
}

type options struct {
	quick, strict, keep, noVerify bool
	scenarios, out, tmp, bin      string
	timeout                       time.Duration

	sizes                      intList
	file, originCap, up, down  byteSize
	mode, peerArgs, snArgs     string
	secure                     string
	keepSeeding                bool
	directMaxN                 int
	singleSize                 byteSize
	singleReps                 int
	schedPeers, schedClients   int
	schedPiecesPerSync         int
	schedSupernodes            int
	swarmTimeout, singleTimout time.Duration

	mountSize, containerBig byteSize
	mountReads, mountReps   int
	containerReps           int
	containerMinChunk       byteSize
	mountTimeout            time.Duration
	dropCaches              bool

	peersTimeout time.Duration
	anchorCache  string

	dsFiles, dsReads, dsWorkers, dsHosts, dsReps int
	dsFileSize, dsBig                            byteSize
	dsSystems                                    string
	dsTimeout                                    time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) (code int) {
	var o options
	fs := flag.NewFlagSet("dfbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", false, "small run: swarm N=1,5,10 with F=8M, single 256M, mount 512M")
	fs.StringVar(&o.scenarios, "scenarios", "swarm,single,scheduler,mount,container,peers,dataset", "comma-separated scenarios to run")
	fs.StringVar(&o.out, "out", "results", "directory for <scenario>.json and PNG plots")
	fs.StringVar(&o.tmp, "tmp", "", "directory for temporary files (default $TMPDIR or /tmp); single writes its outputs here")
	fs.StringVar(&o.bin, "bin", "", "use the product binaries (supernode, dfdaemon, dfget, dfmount, df-snapshotter, dfctl) in this directory instead of building ./cmd/... (same as $"+testenv.BinDirEnv+")")
	fs.DurationVar(&o.timeout, "timeout", 45*time.Minute, "bound on the whole run")
	fs.BoolVar(&o.strict, "strict", false, "exit 1 when a target is not met")
	fs.BoolVar(&o.keep, "keep", false, "keep temporary directories (logs, data dirs) for inspection")
	fs.BoolVar(&o.noVerify, "no-verify", false, "skip the SHA-256 check of downloaded files")
	fs.Var(&o.sizes, "swarm-n", "swarm sizes (default 1,10,25,50,100; --quick 1,5,10)")
	fs.Var(&o.file, "swarm-file", "swarm file size F (default 16M; --quick 8M)")
	fs.Var(&o.originCap, "origin-cap", "origin upload cap u_s, bytes/s (default 8M)")
	fs.Var(&o.up, "peer-up", "per-peer upload cap u, bytes/s (default 512K; --quick 1M)")
	fs.Var(&o.down, "peer-down", "per-peer download cap d, bytes/s (default 512K; --quick 1M)")
	fs.StringVar(&o.mode, "swarm-mode", bench.ModeAuto, "peers as: dfget (embedded peer, --upload-limit), daemon (dfdaemon + dfget), auto")
	fs.StringVar(&o.peerArgs, "swarm-peer-args", "", "extra flags for each peer process (dfget, or dfdaemon in daemon mode), space-separated, e.g. '--concurrency 1'")
	fs.StringVar(&o.snArgs, "swarm-supernode-args", "", "extra flags for the swarm's supernode, space-separated, e.g. '--seed-upload-slots 4'")
	fs.StringVar(&o.secure, "secure", "both", "swarm and single with authentication + mutual TLS: off, on, or both (side by side, with the TLS/plain ratio)")
	fs.BoolVar(&o.keepSeeding, "keep-seeding", true, "dfget mode: peers keep seeding until the whole swarm is done")
	fs.IntVar(&o.directMaxN, "direct-max-n", 10, "time plain HTTP downloads for N up to this")
	fs.DurationVar(&o.swarmTimeout, "swarm-timeout", 0, "bound on one swarm size (default max(3m, 10 T_min))")
	fs.Var(&o.singleSize, "single-size", "single-client file size (default 1G; --quick 256M)")
	fs.IntVar(&o.singleReps, "single-reps", 3, "single-client repetitions (medians reported)")
	fs.DurationVar(&o.singleTimout, "single-timeout", 10*time.Minute, "bound on one single-client download")
	fs.IntVar(&o.schedPeers, "sched-peers", 10000, "scheduler: simulated peers")
	fs.IntVar(&o.schedClients, "sched-clients", 64, "scheduler: concurrent HTTP clients")
	fs.IntVar(&o.schedPiecesPerSync, "sched-pieces-per-sync", 4, "scheduler: pieces reported per sync")
	fs.IntVar(&o.schedSupernodes, "sched-supernodes", 3, "scheduler: supernodes of the fleet variant (30,000 peers over tasks owned by rendezvous hashing); 0 skips it")
	fs.Var(&o.mountSize, "mount-size", "mount: origin file size (default 2G; --quick 512M)")
	fs.IntVar(&o.mountReads, "mount-reads", 200, "mount: random 4 KiB reads for time to first byte")
	fs.IntVar(&o.mountReps, "mount-reps", 3, "mount: repetitions of each sequential read, interleaved (medians reported)")
	fs.DurationVar(&o.mountTimeout, "mount-timeout", 10*time.Minute, "mount: bound on one sequential read or download")
	fs.BoolVar(&o.dropCaches, "drop-caches", true, "mount: when posix_fadvise leaves pages cached, echo 3 > /proc/sys/vm/drop_caches (root); dataset: before every measurement")
	fs.Var(&o.containerBig, "container-file", "container: size of the image's big file (default 256M)")
	fs.IntVar(&o.containerReps, "container-reps", 5, "container: repetitions of every measurement (medians reported)")
	o.containerMinChunk = 64 << 10
	fs.Var(&o.containerMinChunk, "container-min-chunk", "container: --min-chunk-size of the second eStargz image (0 = no second image)")
	fs.DurationVar(&o.peersTimeout, "peers-timeout", 10*time.Minute, "peers: bound on one row of one system")
	fs.StringVar(&o.anchorCache, "anchor-cache", "", "peers: cache of built Dragonfly/Kraken binaries (default $HOME/.cache/damselfly/anchors)")
	fs.IntVar(&o.dsFiles, "dataset-files", 0, "dataset: objects in the tree (3 levels of directories; default 2000; --quick 500)")
	fs.Var(&o.dsFileSize, "dataset-file-size", "dataset: size of each tree object (default 64K)")
	fs.Var(&o.dsBig, "dataset-big", "dataset: size of the object read sequentially and at random (default 1G; --quick 256M)")
	fs.IntVar(&o.dsReads, "dataset-reads", 200, "dataset: cold random 4 KiB reads of the big object")
	fs.IntVar(&o.dsWorkers, "dataset-workers", 8, "dataset: workers reading the tree's files at once")
	fs.IntVar(&o.dsHosts, "dataset-hosts", 4, "dataset: mounts (separate processes and data dirs) reading the tree at once; 0 skips")
	fs.StringVar(&o.dsSystems, "dataset-systems", strings.Join(bench.DatasetSystems, ","), "dataset: systems to compare with the baseline S3 client")
	fs.IntVar(&o.dsReps, "dataset-reps", 1, "dataset: repetitions of every measurement, the systems interleaved (medians reported)")
	fs.DurationVar(&o.dsTimeout, "dataset-timeout", 5*time.Minute, "dataset: bound on one measurement")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dfbench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	defaults(&o)
	variants, err := secureVariants(o.secure)
	if err != nil {
		fmt.Fprintf(stderr, "dfbench: %v\n", err)
		return 2
	}
	want := map[string]bool{}
	for _, s := range strings.Split(o.scenarios, ",") {
		s = strings.TrimSpace(s)
		switch s {
		case "swarm", "single", "scheduler", "mount", "container", "peers", "dataset":
			want[s] = true
		case "":
		default:
			fmt.Fprintf(stderr, "dfbench: unknown scenario %q (want swarm, single, scheduler, mount, container, peers, dataset)\n", s)
			return 2
		}
	}

	// A closed stdout (dfbench | head) must not kill the run before its
	// teardown: with SIGPIPE handled, writes fail with EPIPE instead.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	env := &bench.Env{Root: o.tmp, Log: stderr, Keep: o.keep}
	finished := make(chan struct{})
	defer close(finished)
	defer testenv.RemoveBinaries()
	defer env.CloseAll()
	// On SIGINT, SIGTERM or the deadline: tear everything down at once (the
	// scenario in progress then fails fast), and exit if it does not.
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		env.Logf("%v: tearing down", context.Cause(ctx))
		env.CloseAll()
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			env.Logf("scenario did not stop 30s after teardown; exiting")
			testenv.RemoveBinaries()
			os.Exit(3)
		}
	}()

	if err := os.MkdirAll(o.out, 0o755); err != nil {
		fmt.Fprintf(stderr, "dfbench: %v\n", err)
		return 1
	}
	if o.bin != "" {
		os.Setenv(testenv.BinDirEnv, o.bin)
	}
	if want["swarm"] || want["single"] || want["mount"] || want["container"] || want["peers"] || want["dataset"] {
		btb, closeBuild := testenv.NewProgramTB(o.tmp)
		env.Logf("building binaries")
		err := guardErr(func() { env.BinDir = testenv.BuildBinaries(btb) })
		closeBuild()
		if err != nil {
			fmt.Fprintf(stderr, "dfbench: %v\n", err)
			return 1
		}
	}

	failed := false
	var targets []bench.Target
	scenario := func(name string, f func() error) {
		if ctx.Err() != nil {
			failed = true
			return
		}
		start := time.Now()
		env.Logf("scenario %s: start", name)
		err := guardErr(func() {
			if err := f(); err != nil {
				panic(scenarioErr{err})
			}
		})
		if err != nil {
			failed = true
			fmt.Fprintf(stdout, "\nscenario %s FAILED: %v\n", name, err)
		}
		env.Logf("scenario %s: done in %v", name, time.Since(start).Round(time.Second))
	}
	verify := !o.noVerify
	swarms := map[bool]*bench.SwarmReport{}
	singles := map[bool]*bench.SingleReport{}
	for _, secure := range variants {
		suffix := map[bool]string{false: "", true: "-secure"}[secure]
		if want["swarm"] {
			scenario("swarm"+suffix, func() error {
				rep, err := bench.RunSwarm(ctx, env, bench.SwarmConfig{Sizes: o.sizes, FileSize: int64(o.file),
					OriginCap: int64(o.originCap), Upload: int64(o.up), Download: int64(o.down), DirectMaxN: o.directMaxN,
					Mode: o.mode, KeepSeeding: o.keepSeeding, PeerArgs: strings.Fields(o.peerArgs), SupernodeArgs: strings.Fields(o.snArgs),
					Timeout: o.swarmTimeout, Verify: verify, Secure: secure})
				if len(rep.Runs) > 0 {
					swarms[secure] = rep
					bench.SwarmTable(rep).Fprint(stdout)
					bench.PrintTargets(stdout, rep.Targets)
					targets = append(targets, rep.Targets...)
					writeOut(stdout, stderr, o.out, "swarm"+suffix, rep)
					plot(stderr, filepath.Join(o.out, "swarm"+suffix+".png"), func(p string) error { return bench.PlotSwarm(rep, p) })
					plot(stderr, filepath.Join(o.out, "swarm"+suffix+"_cdf.png"), func(p string) error { return bench.PlotSwarmCDF(rep, p) })
					plot(stderr, filepath.Join(o.out, "swarm"+suffix+"_progress.png"), func(p string) error { return bench.PlotSwarmProgress(rep, p) })
				}
				return err
			})
		}
		if want["single"] {
			scenario("single"+suffix, func() error {
				rep, err := bench.RunSingle(ctx, env, bench.SingleConfig{FileSize: int64(o.singleSize), Reps: o.singleReps,
					Timeout: o.singleTimout, Verify: verify, Secure: secure})
				if err != nil {
					return err
				}
				singles[secure] = rep
				bench.SingleTable(rep).Fprint(stdout)
				bench.PrintTargets(stdout, rep.Targets)
				targets = append(targets, rep.Targets...)
				writeOut(stdout, stderr, o.out, "single"+suffix, rep)
				plot(stderr, filepath.Join(o.out, "single"+suffix+".png"), func(p string) error { return bench.PlotSingle(rep, p) })
				return nil
			})
		}
	}
	if swarms[false] != nil && swarms[true] != nil {
		bench.SecureSwarmTable(swarms[false], swarms[true]).Fprint(stdout)
	}
	if singles[false] != nil && singles[true] != nil {
		bench.SecureSingleTable(singles[false], singles[true]).Fprint(stdout)
	}
	if ts := bench.SecureTargets(swarms[false], swarms[true], singles[false], singles[true]); len(ts) > 0 {
		bench.PrintTargets(stdout, ts)
		targets = append(targets, ts...)
	}
	if want["scheduler"] {
		scenario("scheduler", func() error {
			rep, err := bench.RunScheduler(ctx, env, bench.SchedulerConfig{Peers: o.schedPeers, Clients: o.schedClients,
				PiecesPerSync: o.schedPiecesPerSync})
			if rep.Registrations > 0 {
				bench.SchedulerTable(rep).Fprint(stdout)
				bench.PrintTargets(stdout, rep.Targets)
				targets = append(targets, rep.Targets...)
				writeOut(stdout, stderr, o.out, "scheduler", rep)
			}
			if err != nil || o.schedSupernodes <= 0 {
				return err
			}
			fleet, err := bench.RunSchedulerFleet(ctx, env, bench.SchedulerFleetConfig{Supernodes: o.schedSupernodes,
				Clients: o.schedClients})
			if fleet != nil {
				bench.SchedulerFleetTable(fleet).Fprint(stdout)
				bench.PrintTargets(stdout, fleet.Targets)
				targets = append(targets, fleet.Targets...)
				writeOut(stdout, stderr, o.out, "scheduler-fleet", fleet)
			}
			return err
		})
	}

	if want["mount"] {
		scenario("mount", func() error {
			rep, err := bench.RunMount(ctx, env, bench.MountConfig{FileSize: int64(o.mountSize), Reads: o.mountReads,
				Reps: o.mountReps, Timeout: o.mountTimeout, Verify: verify, DropCaches: o.dropCaches})
			// A run cut short still shows what it measured (no targets).
			if len(rep.TTFB) > 0 {
				for _, t := range bench.MountTables(rep) {
					t.Fprint(stdout)
				}
				bench.PrintTargets(stdout, rep.Targets)
				targets = append(targets, rep.Targets...)
				writeOut(stdout, stderr, o.out, "mount", rep)
				plot(stderr, filepath.Join(o.out, "mount_ttfb.png"), func(p string) error { return bench.PlotMountTTFB(rep, p) })
				if len(rep.Seq) > 0 {
					plot(stderr, filepath.Join(o.out, "mount_seq.png"), func(p string) error { return bench.PlotMountSeq(rep, p) })
				}
			}
			return err
		})
	}
	if want["container"] {
		scenario("container", func() error {
			rep, err := bench.RunContainer(ctx, env, bench.ContainerConfig{BigSize: int64(o.containerBig), Reps: o.containerReps,
				MinChunkSize: containerMinChunk(o.containerMinChunk)})
			if err != nil {
				return err
			}
			bench.ContainerTable(rep).Fprint(stdout)
			bench.PrintTargets(stdout, rep.Targets)
			targets = append(targets, rep.Targets...)
			writeOut(stdout, stderr, o.out, "container", rep)
			plot(stderr, filepath.Join(o.out, "container.png"), func(p string) error { return bench.PlotContainer(rep, p) })
			return nil
		})
	}

	if want["peers"] {
		scenario("peers", func() error {
			rows := bench.DefaultPeersRows
			if o.quick {
				rows = bench.QuickPeersRows
			}
			rep, err := bench.RunPeers(ctx, env, bench.PeersConfig{Rows: rows, Timeout: o.peersTimeout,
				AnchorCache: o.anchorCache, Verify: verify})
			if len(rep.Results) > 0 {
				bench.PeersTable(rep).Fprint(stdout)
				bench.PrintTargets(stdout, rep.Targets)
				targets = append(targets, rep.Targets...)
				writeOut(stdout, stderr, o.out, "peers", rep)
			}
			return err
		})
	}

	if want["dataset"] {
		scenario("dataset", func() error {
			var systems []string
			for _, s := range strings.Split(o.dsSystems, ",") {
				if s = strings.TrimSpace(s); s != "" {
					systems = append(systems, s)
				}
			}
			rep, err := bench.RunDataset(ctx, env, bench.DatasetConfig{Files: o.dsFiles, FileSize: int64(o.dsFileSize),
				BigSize: int64(o.dsBig), Reads: o.dsReads, Workers: o.dsWorkers, Hosts: o.dsHosts, Systems: systems,
				Reps: o.dsReps, Timeout: o.dsTimeout, DropCaches: o.dropCaches})
			// A partial run still shows what it measured.
			if len(rep.Systems) > 0 {
				bench.DatasetTable(rep).Fprint(stdout)
				bench.PrintTargets(stdout, rep.Targets)
				targets = append(targets, rep.Targets...)
				writeOut(stdout, stderr, o.out, "dataset", rep)
			}
			return err
		})
	}

	fmt.Fprintln(stdout, "\n== targets ==")
	bench.PrintTargets(stdout, targets)
	met := 0
	for _, t := range targets {
		if t.Met {
			met++
		}
	}
	fmt.Fprintf(stdout, "%d of %d targets met\n", met, len(targets))
	if ctx.Err() != nil {
		fmt.Fprintf(stdout, "run cut short: %v\n", context.Cause(ctx))
		return 1
	}
	if failed || (o.strict && met < len(targets)) {
		return 1
	}
	return 0
}

func defaults(o *options) {
	setSize := func(v *byteSize, full, quick int64) {
		if *v == 0 {
			*v = byteSize(full)
			if o.quick {
				*v = byteSize(quick)
			}
		}
	}
	if len(o.sizes) == 0 {
		o.sizes = intList{1, 10, 25, 50, 100}
		if o.quick {
			o.sizes = intList{1, 5, 10}
		}
	}
	setSize(&o.file, 16*bench.MiB, 8*bench.MiB)
	setSize(&o.originCap, 8*bench.MiB, 8*bench.MiB)
	// Every peer is a real process and the machine may have 2 cores: with
	// N=100 the aggregate is N*d, so d stays low enough that the product,
	// not the CPU, sets the pace (CPU busy is reported per run).
	setSize(&o.up, 512<<10, 1*bench.MiB)
	setSize(&o.down, 512<<10, 1*bench.MiB)
	setSize(&o.singleSize, 1<<30, 256*bench.MiB)
	setSize(&o.mountSize, 2<<30, 512*bench.MiB)
	setSize(&o.containerBig, 256*bench.MiB, 256*bench.MiB)
	setSize(&o.dsFileSize, 64<<10, 64<<10)
	setSize(&o.dsBig, 1<<30, 256*bench.MiB)
	if o.dsFiles <= 0 {
		o.dsFiles = 2000
		if o.quick {
			o.dsFiles = 500
		}
	}
}

// scenarioErr carries a scenario's error through guardErr.
type scenarioErr struct{ err error }

// guardErr runs f and turns a testenv Fatalf or a scenarioErr panic into an
// error; any other panic propagates (after the deferred teardown runs).
func guardErr(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			switch v := r.(type) {
			case testenv.FatalError:
				err = v
			case scenarioErr:
				err = v.err
			default:
				panic(r)
			}
		}
	}()
	f()
	return nil
}

func writeOut(stdout, stderr io.Writer, dir, name string, v any) {
	path, err := bench.WriteJSON(dir, name, v)
	if err != nil {
		fmt.Fprintf(stderr, "dfbench: writing %s: %v\n", name, err)
		return
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
}

func plot(stderr io.Writer, path string, f func(string) error) {
	if err := f(path); err != nil {
		fmt.Fprintf(stderr, "dfbench: plot %s: %v\n", path, err)
		return
	}
	fmt.Fprintf(stderr, "dfbench: wrote %s\n", path)
}

// secureVariants turns --secure into the variants to run: plain (false)
// and/or authentication + mutual TLS (true).
func secureVariants(v string) ([]bool, error) {
	switch v {
	case "off":
		return []bool{false}, nil
	case "on":
		return []bool{true}, nil
	case "both":
		return []bool{false, true}, nil
	}
	return nil, fmt.Errorf("--secure %q: want off, on or both", v)
}

// containerMinChunk is ContainerConfig.MinChunkSize for
// --container-min-chunk: 0 there means no second image.
func containerMinChunk(v byteSize) int64 {
	if v <= 0 {
		return -1
	}
	return int64(v)
}
