// Package snapshotter owns df-snapshotter's containerd snapshots.Snapshotter:
// overlayfs snapshots whose lower layers may be eStargz layer blobs mounted
// lazily with FUSE (package fusefs) and read through the P2P engine, so
// containers start before their image is downloaded. Layers that are not
// eStargz fall back to normal snapshots that containerd fills. It keeps
// snapshot metadata in containerd's bolt-backed storage package and must not
// talk to registries except to locate and authorize layer blobs.
package snapshotter
