package fusefs

import (
	"context"
	"errors"
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
	// Link, when set, makes this path a hard link to the entry at Link
	// (same inode); every other field is ignored.
	Link string
	// Nlink is the link count of a non-directory (0: 1). Directories get
	// 2 plus their subdirectories, as on a local file system.
	Nlink uint32
}

// dirSize is the size a directory shows, as an overlayfs lower directory
// on ext4 or xfs shows for a small directory.
const dirSize = 4096

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
	entries  []Entry
	timeout  time.Duration
	observer Observer
}

var _ = (fs.NodeOnAdder)((*Root)(nil))

// NewTree checks entries and returns a root that builds them when mounted.
// Parent directories are created as needed; a name given twice, or under a
// non-directory, is an error. An entry "." (a directory) gives the root's
// attributes. readTimeout bounds each read (EIO after it).
func NewTree(entries []Entry, readTimeout time.Duration) (*Root, error) {
	seen := map[string]os.FileMode{}
	out := make([]Entry, 0, len(entries))
	r := &Root{}
	r.dirNode.attr = fuse.Attr{Mode: syscall.S_IFDIR | 0o755, Size: dirSize}
	var links []Entry
	for _, e := range entries {
		if e.Path == "." || e.Path == "./" {
			if !e.Mode.IsDir() {
				return nil, errors.New("the root entry is not a directory")
			}
			r.dirNode.attr = e.attr()
			r.dirNode.xattrs = e.Xattrs
			continue
		}
		clean, err := CheckPath(e.Path)
		if err != nil {
			return nil, err
		}
		e.Path = clean
		if prev, ok := seen[clean]; ok && !(prev.IsDir() && e.Mode.IsDir() && e.Link == "") {
			return nil, fmt.Errorf("entry %q appears twice", clean)
		}
		for dir := path.Dir(clean); dir != "."; dir = path.Dir(dir) {
			if m, ok := seen[dir]; ok && !m.IsDir() {
				return nil, fmt.Errorf("entry %q is under %q, which is not a directory", clean, dir)
			}
		}
		if e.Link != "" {
			if e.Link, err = CheckPath(e.Link); err != nil {
				return nil, fmt.Errorf("hard link %q: %w", clean, err)
			}
			seen[clean] = 0
			links = append(links, e)
			continue
		}
		seen[clean] = e.Mode
		out = append(out, e)
	}
	// A later entry may have made a parent of an earlier one (a file "a"
	// after "a/b"): every parent must be a directory.
	for p := range seen {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if pm, ok := seen[dir]; ok && !pm.IsDir() {
				return nil, fmt.Errorf("entry %q is both a file and the directory of %q", dir, p)
			}
		}
	}
	for _, l := range links {
		m, ok := seen[l.Link]
		if !ok || m.IsDir() || m == 0 {
			return nil, fmt.Errorf("hard link %q: target %q is not a file of the tree", l.Path, l.Link)
		}
	}
	// Parents before children; hard links after their targets.
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(out[i].Path, "/") < strings.Count(out[j].Path, "/")
	})
	out = append(out, links...)
	if readTimeout <= 0 {
		readTimeout = 30 * time.Second
	}
	r.entries, r.timeout = out, readTimeout
	return r, nil
}

// attr is the FUSE attributes an entry starts with.
func (e *Entry) attr() fuse.Attr {
	attr := fuse.Attr{Size: uint64(e.Size), Owner: fuse.Owner{Uid: e.UID, Gid: e.GID}, Nlink: e.Nlink}
	attr.SetTimes(nil, &e.ModTime, &e.ModTime)
	perm := uint32(e.Mode.Perm()) | specialBits(e.Mode)
	switch {
	case e.Mode.IsDir():
		attr.Mode = syscall.S_IFDIR | perm
		attr.Size = dirSize
	case e.Mode&os.ModeDevice != 0:
		attr.Mode = syscall.S_IFBLK | perm
		if e.Mode&os.ModeCharDevice != 0 {
			attr.Mode = syscall.S_IFCHR | perm
		}
		attr.Rdev = e.Rdev
	case e.Mode&os.ModeNamedPipe != 0:
		attr.Mode = syscall.S_IFIFO | perm
	case e.Mode&os.ModeSymlink != 0:
		attr.Mode = syscall.S_IFLNK | 0o777
		attr.Size = uint64(len(e.Target))
	default:
		attr.Mode = syscall.S_IFREG | perm
	}
	if attr.Nlink == 0 {
		attr.Nlink = 1
	}
	return attr
}

// OnAdd builds the tree when the root is mounted.
func (r *Root) OnAdd(ctx context.Context) {
	dirs := map[string]*fs.Inode{".": &r.Inode}
	dirNodes := map[string]*dirNode{".": &r.dirNode}
	subdirs := map[string]uint32{}
	nodes := map[string]*fs.Inode{}
	var mkdir func(p string) *fs.Inode
	mkdir = func(p string) *fs.Inode {
		if in, ok := dirs[p]; ok {
			return in
		}
		parent := mkdir(path.Dir(p))
		d := &dirNode{attr: fuse.Attr{Mode: syscall.S_IFDIR | 0o755, Size: dirSize}}
		in := parent.NewPersistentInode(ctx, d, fs.StableAttr{Mode: syscall.S_IFDIR})
		parent.AddChild(path.Base(p), in, false)
		dirs[p], dirNodes[p] = in, d
		subdirs[path.Dir(p)]++
		return in
	}
	for _, e := range r.entries {
		if e.Link != "" {
			if in, ok := nodes[e.Link]; ok {
				mkdir(path.Dir(e.Path)).AddChild(path.Base(e.Path), in, false)
			}
			continue
		}
		attr := e.attr()
		var node fs.InodeEmbedder
		switch {
		case e.Mode.IsDir():
			mkdir(e.Path)
			d := dirNodes[e.Path]
			d.attr, d.xattrs = attr, e.Xattrs
			continue
		case e.Mode&(os.ModeDevice|os.ModeNamedPipe) != 0:
			n := &dirNode{attr: attr}
			n.xattrs = e.Xattrs
			node = n
		case e.Mode&os.ModeSymlink != 0:
			node = &linkNode{target: e.Target, attr: attr}
		default:
			n := &fileNode{entry: e, attr: attr, timeout: r.timeout, observer: r.observer}
			n.xattrs = e.Xattrs
			node = n
		}
		parent := mkdir(path.Dir(e.Path))
		in := parent.NewPersistentInode(ctx, node, fs.StableAttr{Mode: attr.Mode & syscall.S_IFMT})
		parent.AddChild(path.Base(e.Path), in, false)
		nodes[e.Path] = in
	}
	for p, d := range dirNodes {
		d.attr.Nlink = 2 + subdirs[p]
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

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer recoverOp("getattr", &errno)
	out.Attr = d.attr
	out.Blocks = (out.Size + 511) / 512
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

func (l *linkNode) Readlink(ctx context.Context) (_ []byte, errno syscall.Errno) {
	defer recoverOp("readlink", &errno)
	return []byte(l.target), 0
}

func (l *linkNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr = l.attr
	out.SetTimeout(time.Hour)
	return 0
}
