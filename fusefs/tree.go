package fusefs

import (
	"context"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FileData is where a regular file's bytes come from.
type FileData interface {
	// ReadAt fills p from offset off, waiting for missing bytes until ctx
	// ends.
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	// Progress is (bytes present, total) of the content behind the file.
	Progress() (present, total int64)
	// PassthroughPath names a local file holding exactly this file's bytes,
	// once they are all present ("" otherwise): reads then bypass FUSE.
	PassthroughPath() string
}

// Entry is one node of a tree to mount.
type Entry struct {
	// Path is slash-separated and relative to the mount root.
	Path    string
	Mode    os.FileMode // os.ModeDir, os.ModeSymlink or a regular file's permissions
	Size    int64
	ModTime time.Time
	UID     uint32
	GID     uint32
	Target  string // symlink target
	Digest  string // expected digest, for the xattr
	Source  string // redacted source URL, for the xattr
	Data    FileData
	// Rdev is the device number of a device node (os.ModeDevice).
	Rdev uint32
	// Xattrs are extended attributes to show (e.g. from a layer's TOC,
	// or trusted.overlay.opaque on opaque directories).
	Xattrs map[string][]byte
}

// CheckPath rejects names that would escape the mount: absolute paths, ".."
// components, empty or "." names.
func CheckPath(p string) (string, error) {
	if p == "" || strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("entry name %q: absolute or empty names are refused", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry name %q escapes the mount", p)
		}
	}
	clean := path.Clean(p)
	if clean == "." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("entry name %q is not a file name", p)
	}
	return clean, nil
}

// Root is the root directory of a mounted tree.
type Root struct {
	dirNode
	entries []Entry
	timeout time.Duration
}

var _ = (fs.NodeOnAdder)((*Root)(nil))

// NewTree checks entries and returns a root that builds them when mounted.
// Parent directories are created as needed; a name given twice, or under a
// non-directory, is an error. readTimeout bounds each read (EIO after it).
func NewTree(entries []Entry, readTimeout time.Duration) (*Root, error) {
	seen := map[string]os.FileMode{}
	out := make([]Entry, 0, len(entries))
	for _, e := range entries {
		clean, err := CheckPath(e.Path)
		if err != nil {
			return nil, err
		}
		e.Path = clean
		if prev, ok := seen[clean]; ok && !(prev.IsDir() && e.Mode.IsDir()) {
			return nil, fmt.Errorf("entry %q appears twice", clean)
		}
		for dir := path.Dir(clean); dir != "."; dir = path.Dir(dir) {
			if m, ok := seen[dir]; ok && !m.IsDir() {
				return nil, fmt.Errorf("entry %q is under %q, which is not a directory", clean, dir)
			}
		}
		seen[clean] = e.Mode
		out = append(out, e)
	}
	// Parents before children.
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(out[i].Path, "/") < strings.Count(out[j].Path, "/")
	})
	if readTimeout <= 0 {
		readTimeout = 30 * time.Second
	}
	r := &Root{entries: out, timeout: readTimeout}
	r.dirNode.attr = fuse.Attr{Mode: syscall.S_IFDIR | 0o755}
	for _, e := range out {
		if e.Path == "." && e.Mode.IsDir() {
			r.dirNode.xattrs = e.Xattrs
		}
	}
	return r, nil
}

// OnAdd builds the tree when the root is mounted.
func (r *Root) OnAdd(ctx context.Context) {
	dirs := map[string]*fs.Inode{".": &r.Inode}
	var mkdir func(p string) *fs.Inode
	mkdir = func(p string) *fs.Inode {
		if in, ok := dirs[p]; ok {
			return in
		}
		parent := mkdir(path.Dir(p))
		d := &dirNode{attr: fuse.Attr{Mode: syscall.S_IFDIR | 0o755}}
		in := parent.NewPersistentInode(ctx, d, fs.StableAttr{Mode: syscall.S_IFDIR})
		parent.AddChild(path.Base(p), in, false)
		dirs[p] = in
		return in
	}
	for _, e := range r.entries {
		attr := fuse.Attr{Size: uint64(e.Size), Owner: fuse.Owner{Uid: e.UID, Gid: e.GID}}
		attr.SetTimes(nil, &e.ModTime, &e.ModTime)
		perm := uint32(e.Mode.Perm())
		perm |= specialBits(e.Mode)
		switch {
		case e.Mode.IsDir():
			in := mkdir(e.Path)
			d := in.Operations().(*dirNode)
			attr.Mode = syscall.S_IFDIR | perm
			d.attr, d.xattrs = attr, e.Xattrs
		case e.Mode&os.ModeDevice != 0:
			parent := mkdir(path.Dir(e.Path))
			typ := uint32(syscall.S_IFBLK)
			if e.Mode&os.ModeCharDevice != 0 {
				typ = syscall.S_IFCHR
			}
			attr.Mode = typ | perm
			attr.Rdev = e.Rdev
			n := &dirNode{attr: attr}
			n.xattrs = e.Xattrs
			parent.AddChild(path.Base(e.Path), parent.NewPersistentInode(ctx, n, fs.StableAttr{Mode: typ}), false)
		case e.Mode&os.ModeSymlink != 0:
			parent := mkdir(path.Dir(e.Path))
			attr.Mode = syscall.S_IFLNK | 0o777
			attr.Size = uint64(len(e.Target))
			n := &linkNode{target: e.Target, attr: attr}
			parent.AddChild(path.Base(e.Path), parent.NewPersistentInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFLNK}), false)
		default:
			parent := mkdir(path.Dir(e.Path))
			attr.Mode = syscall.S_IFREG | perm
			n := &fileNode{entry: e, attr: attr, timeout: r.timeout}
			n.xattrs = e.Xattrs
			parent.AddChild(path.Base(e.Path), parent.NewPersistentInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG}), false)
		}
	}
}

// specialBits maps setuid, setgid and sticky to their stat bits.
func specialBits(m os.FileMode) uint32 {
	var b uint32
	if m&os.ModeSetuid != 0 {
		b |= syscall.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		b |= syscall.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		b |= syscall.S_ISVTX
	}
	return b
}

// dirNode is a directory (children are added at mount time), or a device
// node: both are attributes and extended attributes only.
type dirNode struct {
	fs.Inode
	attr fuse.Attr
	xattrSet
}

var (
	_ = (fs.NodeGetattrer)((*dirNode)(nil))
	_ = (fs.NodeGetxattrer)((*dirNode)(nil))
	_ = (fs.NodeListxattrer)((*dirNode)(nil))
)

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr = d.attr
	out.SetTimeout(time.Hour)
	return 0
}

// linkNode is a symlink.
type linkNode struct {
	fs.Inode
	target string
	attr   fuse.Attr
}

var (
	_ = (fs.NodeReadlinker)((*linkNode)(nil))
	_ = (fs.NodeGetattrer)((*linkNode)(nil))
)

func (l *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) { return []byte(l.target), 0 }

func (l *linkNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr = l.attr
	out.SetTimeout(time.Hour)
	return 0
}
