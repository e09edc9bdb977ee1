package snapshotter

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// fakeLayers records mounts; a unit-test stand-in for FUSE layers.
type fakeLayers struct {
	mu      sync.Mutex
	mounted map[string]Layer
	fail    error
}

func (f *fakeLayers) Mount(ctx context.Context, dir string, l Layer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if f.mounted == nil {
		f.mounted = map[string]Layer{}
	}
	f.mounted[dir] = l
	return nil
}

func (f *fakeLayers) Unmount(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mounted, dir)
	return nil
}

func (f *fakeLayers) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.mounted)
}

func quiet() logrus.FieldLogger { return testenv.QuietLogger() }

func newSN(t *testing.T, root string, fl LayerMounter) *Snapshotter {
	t.Helper()
	s, err := New(context.Background(), root, fl, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func remoteLabels(target, dgst string) map[string]string {
	return map[string]string{LabelSnapshotRef: target, LabelImageRef: "127.0.0.1:5000/app:v1",
		LabelLayerDigest: dgst, LabelTOCDigest: "sha256:" + strings.Repeat("c", 64)}
}

func TestPrepareMounts(t *testing.T) {
	ctx := context.Background()
	s := newSN(t, t.TempDir(), nil)
	m, err := s.Prepare(ctx, "base-active", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || m[0].Type != "bind" || m[0].Options[0] != "rw" {
		t.Fatalf("no-parent mounts = %+v, want rw bind", m)
	}
	if err := s.Commit(ctx, "base", "base-active"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, key string
		view      bool
		wantType  string
		wantOpt   string
	}{
		{"active over one parent", "c1", false, "overlay", "upperdir="},
		{"view of one parent", "v1", true, "bind", "ro"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m []mount.Mount
			var err error
			if tt.view {
				m, err = s.View(ctx, tt.key, "base")
			} else {
				m, err = s.Prepare(ctx, tt.key, "base")
			}
			if err != nil {
				t.Fatal(err)
			}
			if m[0].Type != tt.wantType || !strings.Contains(strings.Join(m[0].Options, ","), tt.wantOpt) {
				t.Fatalf("mounts = %+v", m)
			}
		})
	}
}

func TestRemotePrepareCommitsTarget(t *testing.T) {
	ctx := context.Background()
	fl := &fakeLayers{}
	s := newSN(t, t.TempDir(), fl)
	dgst := "sha256:" + strings.Repeat("a", 64)
	_, err := s.Prepare(ctx, "extract-1", "", snapshots.WithLabels(remoteLabels("chain1", dgst)))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of a remote layer = %v, want ErrAlreadyExists", err)
	}
	info, err := s.Stat(ctx, "chain1")
	if err != nil {
		t.Fatalf("target not committed: %v", err)
	}
	if info.Kind != snapshots.KindCommitted || info.Labels[labelRemote] == "" || info.Labels[LabelLayerDigest] != dgst {
		t.Fatalf("target info = %+v", info)
	}
	if _, err := s.Stat(ctx, "extract-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("extraction key still exists: %v", err)
	}
	if fl.count() != 1 {
		t.Fatalf("mounted %d layers, want 1", fl.count())
	}
	// A container on top gets overlay with the remote layer as lowerdir.
	m, err := s.Prepare(ctx, "ctr", "chain1")
	if err != nil {
		t.Fatal(err)
	}
	if m[0].Type != "overlay" {
		t.Fatalf("container mounts = %+v", m)
	}
	if err := s.Remove(ctx, "ctr"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "chain1"); err != nil {
		t.Fatal(err)
	}
	if fl.count() != 0 {
		t.Fatal("remote layer not unmounted on Remove")
	}
}

func TestRemoteFallbacks(t *testing.T) {
	ctx := context.Background()
	dgst := "sha256:" + strings.Repeat("b", 64)
	tests := []struct {
		name   string
		labels map[string]string
		fail   error
	}{
		{"no TOC digest: not eStargz", map[string]string{LabelSnapshotRef: "c", LabelImageRef: "r/x:1", LabelLayerDigest: dgst}, nil},
		{"mount fails", remoteLabels("c", dgst), errors.New("registry down")},
		{"CRI labels work too", map[string]string{LabelSnapshotRef: "c", LabelCRIImageRef: "r/x:1", LabelCRILayerDigest: dgst,
			LabelTOCDigest: "sha256:" + strings.Repeat("c", 64)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fl := &fakeLayers{fail: tt.fail}
			s := newSN(t, t.TempDir(), fl)
			m, err := s.Prepare(ctx, "extract", "", snapshots.WithLabels(tt.labels))
			_, isRemote := layerFromLabels(tt.labels)
			if isRemote && tt.fail == nil {
				if !errdefs.IsAlreadyExists(err) {
					t.Fatalf("want remote mount, got %v", err)
				}
				return
			}
			if err != nil || len(m) != 1 {
				t.Fatalf("fallback Prepare = %v, %v; want a normal snapshot", m, err)
			}
			if _, err := s.Stat(ctx, "extract"); err != nil {
				t.Fatalf("fallback snapshot missing: %v", err)
			}
		})
	}
}

func TestRestoreAfterRestart(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	fl := &fakeLayers{}
	s, err := New(ctx, root, fl, quiet())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Prepare(ctx, "x", "", snapshots.WithLabels(remoteLabels("chain", "sha256:"+strings.Repeat("d", 64))))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	s.Close()
	if fl.count() != 0 {
		t.Fatal("Close left layers mounted")
	}
	// Restart with a working mounter: the layer comes back.
	s2 := newSN(t, root, fl)
	if fl.count() != 1 {
		t.Fatalf("restore mounted %d layers, want 1", fl.count())
	}
	s2.Close()
	// Restart with a failing mounter: snapshots above the layer fail cleanly.
	s3 := newSN(t, root, &fakeLayers{fail: errors.New("offline")})
	if _, err := s3.Prepare(ctx, "ctr", "chain"); err == nil {
		t.Fatal("Prepare over an unrestorable layer succeeded")
	} else if !strings.Contains(err.Error(), "unavailable") {
		t.Fatalf("error does not say why: %v", err)
	}
	if _, err := s3.Stat(ctx, "ctr"); !errdefs.IsNotFound(err) {
		t.Fatalf("failed Prepare left its snapshot behind: %v", err)
	}
}
