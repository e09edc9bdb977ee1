package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// stargzVariant runs stargz-snapshotter (containerd-stargz-grpc built by
// testenv.BuildStargzSnapshotter from its Go module, with its defaults;
// args add e.g. -no-background-fetch) as containerd's "stargz" proxy
// snapshotter. The image is pulled by stargz-pull (as ctr-remote rpull:
// the module's own labels handler).
func stargzVariant(name, bin string, args ...string) remoteVariant {
	return remoteVariant{name: name, snapshotter: "stargz", refused: "failed to prepare remote snapshot",
		pull: func(env *Env, c *testenv.Containerd, ref string) (string, []string) {
			return testenv.StargzPullBin(bin), []string{"-address", c.Sock, "-namespace", c.Namespace, "-plain-http", ref}
		},
		start: func(ctx context.Context, tb testenv.TB, env *Env, _ string) (*testenv.Containerd, *testenv.Proc, error) {
			dir, err := os.MkdirTemp("", "sgz")
			if err != nil {
				return nil, nil, err
			}
			tb.Cleanup(func() {
				for _, m := range mountsBelow(dir) {
					syscall.Unmount(m, syscall.MNT_DETACH)
				}
				if left := mountsBelow(dir); len(left) > 0 {
					env.Logf("not removing %s: still mounted: %v", dir, left)
					return
				}
				os.RemoveAll(dir)
			})
			sock := filepath.Join(dir, "s.sock")
			snap := testenv.Start(tb, filepath.Dir(bin), filepath.Base(bin),
				append([]string{"-root", filepath.Join(dir, "root"), "-address", sock}, args...)...)
			c, err := containerdWithSnapshotter(ctx, tb, "containerd-stargz-grpc", "stargz", sock, snap)
			return c, snap, err
		}}
}

// SideBySide holds the runs the table compares: df-snapshotter and
// stargz-snapshotter, each with its defaults and with the background fetch
// off.
type SideBySide struct {
	// StargzVersion is the stargz-snapshotter release built, or why it
	// could not be (StargzError).
	StargzVersion string `json:"stargzVersion"`
	StargzError   string `json:"stargzError,omitempty"`
	// Damselfly (defaults: background fetch on) and Stargz (defaults),
	// StargzNoBG (-no-background-fetch); medians of the reps.
	Damselfly      ContainerRun   `json:"damselfly"`
	Stargz         ContainerRun   `json:"stargz"`
	StargzNoBG     ContainerRun   `json:"stargzNoBackground"`
	DamselflyReps  []ContainerRun `json:"damselflyReps"`
	StargzReps     []ContainerRun `json:"stargzReps"`
	StargzNoBGReps []ContainerRun `json:"stargzNoBackgroundReps"`
}

// runSideBySide makes one repetition of the side-by-side runs.
func runSideBySide(ctx context.Context, env *Env, cfg ContainerConfig, sb *SideBySide, reg *testenv.Registry, ref, firstMiB, whole string) error {
	var r ContainerRun
	if err := runRemote(ctx, env, cfg, &r, reg, ref, firstMiB, whole, damselflyVariant("damselfly")); err != nil {
		return fmt.Errorf("df-snapshotter with defaults: %w", err)
	}
	sb.DamselflyReps = append(sb.DamselflyReps, r)
	if sb.StargzError != "" {
		return nil
	}
	bin, err := testenv.BuildStargzSnapshotter(ctx)
	if err != nil {
		sb.StargzError = err.Error()
		env.Logf("container: no stargz-snapshotter: %v", err)
		return nil
	}
	r = ContainerRun{}
	if err := runRemote(ctx, env, cfg, &r, reg, ref, firstMiB, whole, stargzVariant("stargz", bin)); err != nil {
		return fmt.Errorf("stargz-snapshotter with defaults: %w", err)
	}
	sb.StargzReps = append(sb.StargzReps, r)
	r = ContainerRun{}
	if err := runRemote(ctx, env, cfg, &r, reg, ref, firstMiB, whole, stargzVariant("stargz-nobg", bin, "-no-background-fetch")); err != nil {
		return fmt.Errorf("stargz-snapshotter without background fetch: %w", err)
	}
	sb.StargzNoBGReps = append(sb.StargzNoBGReps, r)
	return nil
}

// SideBySideTargets are issue 13's targets, from one run.
func SideBySideTargets(rep *ContainerReport) []Target {
	sb := rep.SideBySide
	if sb == nil || len(sb.StargzReps) == 0 {
		return nil
	}
	var out []Target
	add := func(name string, v, limit float64, measured string) {
		t := AtMost(name, v, limit, "%.2fx")
		t.Measured = fmt.Sprintf("%.2fx (%s)", v, measured)
		out = append(out, t)
	}
	add("cold start with defaults at most 0.8x stargz-snapshotter's", sb.Damselfly.Start/sb.Stargz.Start, 0.8,
		fmt.Sprintf("%.2fs vs %.2fs", sb.Damselfly.Start, sb.Stargz.Start))
	add("cold start with background fetch off at most 0.9x stargz-snapshotter's", rep.Lazy.Start/sb.StargzNoBG.Start, 0.9,
		fmt.Sprintf("%.2fs vs %.2fs", rep.Lazy.Start, sb.StargzNoBG.Start))
	add("registry bytes until the first output at most 1.2x stargz-snapshotter's (defaults)",
		float64(sb.Damselfly.StartEgress)/float64(max(sb.Stargz.StartEgress, 1)), 1.2,
		fmt.Sprintf("%s vs %s", fmtMiB(sb.Damselfly.StartEgress), fmtMiB(sb.Stargz.StartEgress)))
	add("whole-file read after start at most 1.5x overlayfs's (defaults)", sb.Damselfly.Read/rep.Full.Read, 1.5,
		fmt.Sprintf("%.2fs vs %.2fs", sb.Damselfly.Read, rep.Full.Read))
	return out
}

// SideBySideTable renders the table: overlayfs, stargz-snapshotter
// and Damselfly, defaults first.
func SideBySideTable(rep *ContainerReport) *Table {
	sb := rep.SideBySide
	if sb == nil {
		return nil
	}
	t := &Table{Title: fmt.Sprintf("cold start side by side: overlayfs, stargz-snapshotter %s, Damselfly (busybox + %s file, medians of %d)",
		sb.StargzVersion, fmtMiB(rep.Config.BigSize), len(sb.DamselflyReps)),
		Header: []string{"", "overlayfs (full pull)", "stargz-snapshotter", "Damselfly"}}
	t.AddRow("cold start, defaults", fmtSec(rep.Full.Start), fmtSec(sb.Stargz.Start), fmtSec(sb.Damselfly.Start))
	t.AddRow("cold start, background fetch off in both", "", fmtSec(sb.StargzNoBG.Start), fmtSec(rep.Lazy.Start))
	t.AddRow("registry bytes until the first output, defaults", fmtMiB(rep.Full.StartEgress), fmtMiB(sb.Stargz.StartEgress), fmtMiB(sb.Damselfly.StartEgress))
	t.AddRow("reading the whole file after start, defaults", fmtSec(rep.Full.Read), fmtSec(sb.Stargz.Read), fmtSec(sb.Damselfly.Read))
	t.AddRow("reading the whole file after start, background fetch off", "", fmtSec(sb.StargzNoBG.Read), fmtSec(rep.Lazy.Read))
	if sb.StargzError != "" {
		t.Notes = append(t.Notes, "stargz-snapshotter not measured: "+sb.StargzError)
	}
	t.Notes = append(t.Notes,
		"stargz-snapshotter: containerd-stargz-grpc's equivalent built from github.com/containerd/stargz-snapshotter@"+sb.StargzVersion+
			" (service package, defaults; its cmd/ module is not on the module proxy), image pulled by stargz-pull (containerd Pull + the module's AppendDefaultLabelsHandlerWrapper, as ctr-remote rpull);",
		"start = pull + run to the script's output; registry bytes: blob bytes the registry served meanwhile.")
	return t
}
