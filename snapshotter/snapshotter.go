package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/storage"
	"github.com/sirupsen/logrus"
)

// Layer locates a remote eStargz layer.
type Layer struct {
	ImageRef  string // e.g. 127.0.0.1:5000/app:v1
	Digest    string // blob digest, sha256:...
	TOCDigest string // eStargz TOC digest
}

// LayerMounter mounts remote layers at directories.
type LayerMounter interface {
	// Mount makes the layer's tree appear at dir (read-only), fetching
	// what it needs through P2P; it returns once the layer is usable.
	Mount(ctx context.Context, dir string, layer Layer) error
	// Unmount removes a mount made by Mount.
	Unmount(dir string) error
}

// Snapshotter is an overlayfs snapshotter with remote lower layers.
//
// On disk, under root:
//
//	metadata.db          containerd's bolt snapshot store
//	snapshots/<id>/fs    a snapshot's files, or the FUSE mount of a remote layer
//	snapshots/<id>/work  overlayfs work dir of active snapshots
type Snapshotter struct {
	root   string
	ms     *storage.MetaStore
	remote LayerMounter
	log    logrus.FieldLogger

	mu     sync.Mutex
	broken map[string]error // snapshot ID -> why its remote layer is unavailable
}

var _ snapshots.Snapshotter = (*Snapshotter)(nil)

// New opens (or creates) a snapshotter at root. remote may be nil (no lazy
// layers). Remote layers committed before a restart are mounted again; a
// layer that cannot be restored makes the snapshots above it fail cleanly
// with an error instead of exposing an empty directory.
func New(ctx context.Context, root string, remote LayerMounter, log logrus.FieldLogger) (*Snapshotter, error) {
	if err := os.MkdirAll(filepath.Join(root, "snapshots"), 0o700); err != nil {
		return nil, fmt.Errorf("create snapshotter root: %w", err)
	}
	ms, err := storage.NewMetaStore(filepath.Join(root, "metadata.db"))
	if err != nil {
		return nil, fmt.Errorf("open snapshot metadata: %w", err)
	}
	if log == nil {
		log = logrus.StandardLogger()
	}
	s := &Snapshotter{root: root, ms: ms, remote: remote, log: log, broken: map[string]error{}}
	s.restore(ctx)
	return s, nil
}

func (s *Snapshotter) dir(id string) string   { return filepath.Join(s.root, "snapshots", id) }
func (s *Snapshotter) fsDir(id string) string { return filepath.Join(s.dir(id), "fs") }

// Stat returns a snapshot's info.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	ctx, t, err := s.ms.TransactionContext(ctx, false)
	if err != nil {
		return snapshots.Info{}, err
	}
	defer t.Rollback()
	_, info, _, err := storage.GetInfo(ctx, key)
	return info, err
}

// Update changes a snapshot's labels.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	ctx, t, err := s.ms.TransactionContext(ctx, true)
	if err != nil {
		return snapshots.Info{}, err
	}
	info, err = storage.UpdateInfo(ctx, info, fieldpaths...)
	if err != nil {
		t.Rollback()
		return snapshots.Info{}, err
	}
	return info, t.Commit()
}

// Usage returns disk usage: recorded for committed snapshots (0 for remote
// layers, whose bytes live in the piece store), measured for active ones.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	ctx, t, err := s.ms.TransactionContext(ctx, false)
	if err != nil {
		return snapshots.Usage{}, err
	}
	id, info, usage, err := storage.GetInfo(ctx, key)
	t.Rollback()
	if err != nil {
		return snapshots.Usage{}, err
	}
	if info.Kind == snapshots.KindActive {
		return diskUsage(s.fsDir(id))
	}
	return usage, nil
}

// Mounts returns the mounts of an active or view snapshot.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	ctx, t, err := s.ms.TransactionContext(ctx, false)
	if err != nil {
		return nil, err
	}
	sn, err := storage.GetSnapshot(ctx, key)
	t.Rollback()
	if err != nil {
		return nil, fmt.Errorf("get snapshot %s: %w", key, err)
	}
	return s.mounts(sn)
}

// Prepare creates an active snapshot. When containerd unpacks a layer
// (label containerd.io/snapshot.ref) that carries eStargz labels, the layer
// is mounted remotely and committed under the target name at once, and
// Prepare answers ErrAlreadyExists so that containerd skips downloading it.
// Any failure falls back to a normal snapshot that containerd fills.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	var base snapshots.Info
	for _, o := range opts {
		if err := o(&base); err != nil {
			return nil, err
		}
	}
	if target, ok := base.Labels[LabelSnapshotRef]; ok && s.remote != nil {
		if layer, ok := layerFromLabels(base.Labels); ok {
			err := s.prepareRemote(ctx, key, parent, target, layer, opts)
			if err == nil {
				return nil, fmt.Errorf("target snapshot %q: %w", target, errdefs.ErrAlreadyExists)
			}
			if errdefs.IsAlreadyExists(err) {
				return nil, err
			}
			s.log.WithError(err).WithField("layer", layer.Digest).Warn("lazy mount failed; containerd will download the layer")
		}
	}
	return s.createWithMounts(ctx, snapshots.KindActive, key, parent, opts)
}

// View creates a read-only snapshot of parent.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.createWithMounts(ctx, snapshots.KindView, key, parent, opts)
}

// createWithMounts creates a snapshot and returns its mounts; a snapshot
// whose mounts cannot be had (a lower layer is unavailable) is removed
// again rather than left behind.
func (s *Snapshotter) createWithMounts(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	sn, err := s.create(ctx, kind, key, parent, opts)
	if err != nil {
		return nil, err
	}
	m, err := s.mounts(sn)
	if err != nil {
		s.Remove(ctx, key)
		return nil, err
	}
	return m, nil
}

// Commit turns an active snapshot into a committed one named name.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	ctx, t, err := s.ms.TransactionContext(ctx, true)
	if err != nil {
		return err
	}
	id, _, _, err := storage.GetInfo(ctx, key)
	if err != nil {
		t.Rollback()
		return err
	}
	usage, err := diskUsage(s.fsDir(id))
	if err != nil {
		t.Rollback()
		return err
	}
	if _, err := storage.CommitActive(ctx, key, name, usage, opts...); err != nil {
		t.Rollback()
		return fmt.Errorf("commit %s as %s: %w", key, name, err)
	}
	return t.Commit()
}

// Remove deletes a snapshot, unmounting its remote layer if it has one.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	ctx, t, err := s.ms.TransactionContext(ctx, true)
	if err != nil {
		return err
	}
	_, info, _, err := storage.GetInfo(ctx, key)
	if err != nil {
		t.Rollback()
		return err
	}
	id, _, err := storage.Remove(ctx, key)
	if err != nil {
		t.Rollback()
		return fmt.Errorf("remove snapshot %s: %w", key, err)
	}
	if err := t.Commit(); err != nil {
		return err
	}
	if info.Labels[labelRemote] != "" && s.remote != nil {
		if err := s.remote.Unmount(s.fsDir(id)); err != nil {
			s.log.WithError(err).WithField("snapshot", key).Warn("unmount remote layer")
		}
	}
	s.mu.Lock()
	delete(s.broken, id)
	s.mu.Unlock()
	if err := os.RemoveAll(s.dir(id)); err != nil {
		return fmt.Errorf("remove snapshot %s files: %w", key, err)
	}
	return nil
}

// Walk calls fn for every snapshot matching filters.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	ctx, t, err := s.ms.TransactionContext(ctx, false)
	if err != nil {
		return err
	}
	defer t.Rollback()
	return storage.WalkInfo(ctx, fn, filters...)
}

// Close unmounts every remote layer and closes the metadata store.
func (s *Snapshotter) Close() error {
	if s.remote != nil {
		ctx, t, err := s.ms.TransactionContext(context.Background(), false)
		if err == nil {
			storage.WalkInfo(ctx, func(ctx context.Context, info snapshots.Info) error {
				if info.Labels[labelRemote] != "" {
					if id, _, _, err := storage.GetInfo(ctx, info.Name); err == nil {
						s.remote.Unmount(s.fsDir(id))
					}
				}
				return nil
			})
			t.Rollback()
		}
	}
	return s.ms.Close()
}

// create makes a snapshot record and its directories.
func (s *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) (storage.Snapshot, error) {
	ctx, t, err := s.ms.TransactionContext(ctx, true)
	if err != nil {
		return storage.Snapshot{}, err
	}
	sn, err := storage.CreateSnapshot(ctx, kind, key, parent, opts...)
	if err != nil {
		t.Rollback()
		return storage.Snapshot{}, fmt.Errorf("create snapshot %s: %w", key, err)
	}
	if err := os.MkdirAll(s.fsDir(sn.ID), 0o755); err != nil {
		t.Rollback()
		return storage.Snapshot{}, fmt.Errorf("create snapshot dir: %w", err)
	}
	if kind == snapshots.KindActive {
		if err := os.MkdirAll(filepath.Join(s.dir(sn.ID), "work"), 0o711); err != nil {
			t.Rollback()
			return storage.Snapshot{}, fmt.Errorf("create work dir: %w", err)
		}
	}
	if err := t.Commit(); err != nil {
		return storage.Snapshot{}, err
	}
	return sn, nil
}

// prepareRemote mounts the layer in a fresh snapshot and commits it as
// target.
func (s *Snapshotter) prepareRemote(ctx context.Context, key, parent, target string, layer Layer, opts []snapshots.Opt) error {
	if _, err := s.Stat(ctx, target); err == nil {
		return fmt.Errorf("target snapshot %q: %w", target, errdefs.ErrAlreadyExists)
	}
	sn, err := s.create(ctx, snapshots.KindActive, key, parent, opts)
	if err != nil {
		return err
	}
	if err := s.remote.Mount(ctx, s.fsDir(sn.ID), layer); err != nil {
		s.Remove(ctx, key)
		return fmt.Errorf("mount layer %s: %w", layer.Digest, err)
	}
	cctx, t, err := s.ms.TransactionContext(ctx, true)
	if err == nil {
		labels := map[string]string{labelRemote: "1", LabelImageRef: layer.ImageRef, LabelLayerDigest: layer.Digest,
			LabelTOCDigest: layer.TOCDigest}
		_, err = storage.CommitActive(cctx, key, target, snapshots.Usage{}, append(opts, snapshots.WithLabels(labels))...)
		if err != nil {
			t.Rollback()
		} else {
			err = t.Commit()
		}
	}
	if err != nil {
		s.remote.Unmount(s.fsDir(sn.ID))
		s.Remove(ctx, key)
		return fmt.Errorf("commit remote layer %s: %w", layer.Digest, err)
	}
	s.log.WithFields(logrus.Fields{"layer": layer.Digest, "snapshot": target}).Info("layer mounted lazily")
	return nil
}

// restore mounts again the remote layers of committed snapshots.
func (s *Snapshotter) restore(ctx context.Context) {
	type todo struct {
		id    string
		layer Layer
	}
	var list []todo
	rctx, t, err := s.ms.TransactionContext(ctx, false)
	if err != nil {
		return
	}
	storage.WalkInfo(rctx, func(ctx context.Context, info snapshots.Info) error {
		if info.Labels[labelRemote] == "" {
			return nil
		}
		id, _, _, err := storage.GetInfo(ctx, info.Name)
		if err == nil {
			l, _ := layerFromLabels(info.Labels)
			list = append(list, todo{id, l})
		}
		return nil
	})
	t.Rollback()
	for _, td := range list {
		err := errors.New("no remote layer support configured")
		if s.remote != nil {
			syscall.Unmount(s.fsDir(td.id), syscall.MNT_DETACH) // a stale mount from before
			err = s.remote.Mount(ctx, s.fsDir(td.id), td.layer)
		}
		if err != nil {
			s.log.WithError(err).WithField("layer", td.layer.Digest).Error("could not restore lazy layer; snapshots above it will fail")
			s.mu.Lock()
			s.broken[td.id] = err
			s.mu.Unlock()
			continue
		}
		s.log.WithField("layer", td.layer.Digest).Info("restored lazy layer")
	}
}

// mounts builds the mounts of a snapshot: a bind mount when it has no
// parent (or is a view of one), else overlayfs over the parents.
func (s *Snapshotter) mounts(sn storage.Snapshot) ([]mount.Mount, error) {
	s.mu.Lock()
	for _, pid := range sn.ParentIDs {
		if err := s.broken[pid]; err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("a lower layer of this snapshot is unavailable: %w", err)
		}
	}
	s.mu.Unlock()
	if len(sn.ParentIDs) == 0 {
		ro := "rw"
		if sn.Kind == snapshots.KindView {
			ro = "ro"
		}
		return []mount.Mount{{Type: "bind", Source: s.fsDir(sn.ID), Options: []string{ro, "rbind"}}}, nil
	}
	if sn.Kind == snapshots.KindView && len(sn.ParentIDs) == 1 {
		return []mount.Mount{{Type: "bind", Source: s.fsDir(sn.ParentIDs[0]), Options: []string{"ro", "rbind"}}}, nil
	}
	lower := make([]string, len(sn.ParentIDs))
	for i, pid := range sn.ParentIDs {
		lower[i] = s.fsDir(pid)
	}
	opts := []string{"lowerdir=" + strings.Join(lower, ":")}
	if sn.Kind == snapshots.KindActive {
		opts = append([]string{"workdir=" + filepath.Join(s.dir(sn.ID), "work"), "upperdir=" + s.fsDir(sn.ID)}, opts...)
	} else if len(lower) == 1 {
		opts = []string{"ro", "lowerdir=" + lower[0]}
	}
	return []mount.Mount{{Type: "overlay", Source: "overlay", Options: opts}}, nil
}

// layerFromLabels finds a remote eStargz layer in snapshot labels.
func layerFromLabels(labels map[string]string) (Layer, bool) {
	l := Layer{ImageRef: labels[LabelImageRef], Digest: labels[LabelLayerDigest], TOCDigest: labels[LabelTOCDigest]}
	if l.ImageRef == "" {
		l.ImageRef = labels[LabelCRIImageRef]
	}
	if l.Digest == "" {
		l.Digest = labels[LabelCRILayerDigest]
	}
	return l, l.ImageRef != "" && l.Digest != "" && l.TOCDigest != ""
}

// diskUsage sums the sizes and counts the inodes under dir (each hardlinked
// inode once); it does not cross into other file systems.
func diskUsage(dir string) (snapshots.Usage, error) {
	var u snapshots.Usage
	seen := map[uint64]bool{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
			u.Size += st.Blocks * 512
		}
		u.Inodes++
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return u, fmt.Errorf("disk usage of %s: %w", dir, err)
	}
	return u, nil
}
