package fusefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Extended attribute names.
const (
	XattrProgress = "user.damselfly.progress"
	XattrDigest   = "user.damselfly.digest"
	XattrSource   = "user.damselfly.source"
	// XattrMode is how the content is fetched: "p2p" (through a supernode
	// and the swarm) or "direct" (straight from the origin, none reachable).
	XattrMode = "user.damselfly.mode"
)

// Moder is optionally implemented by FileData and Content: Mode says how
// the bytes are fetched right now ("p2p" or "direct"; "" when unknown).
type Moder interface {
	Mode() string
}

// fileNode is a regular, read-only file whose bytes come from FileData.
type fileNode struct {
	fs.Inode
	xattrSet
	entry    Entry
	attr     fuse.Attr
	timeout  time.Duration
	observer Observer
}

var (
	_ = (fs.NodeGetattrer)((*fileNode)(nil))
	_ = (fs.NodeOpener)((*fileNode)(nil))
	_ = (fs.NodeReader)((*fileNode)(nil))
	_ = (fs.NodeGetxattrer)((*fileNode)(nil))
	_ = (fs.NodeListxattrer)((*fileNode)(nil))
)

func (f *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer recoverOp("getattr "+f.entry.Path, &errno)
	out.Attr = f.attr
	out.Blocks = (out.Size + 511) / 512
	out.SetTimeout(time.Hour)
	return 0
}

// Open refuses writes. Content is immutable, so the kernel keeps its page
// cache across opens (FOPEN_KEEP_CACHE); once every byte is local the file
// is opened in passthrough mode where the kernel allows it, and reads no
// longer reach this process at all.
func (f *fileNode) Open(ctx context.Context, flags uint32) (_ fs.FileHandle, _ uint32, errno syscall.Errno) {
	defer recoverOp("open "+f.entry.Path, &errno)
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	if f.entry.Data != nil {
		if p := f.entry.Data.PassthroughPath(); p != "" {
			if file, err := os.Open(p); err == nil {
				return &passthroughHandle{f: file}, fuse.FOPEN_KEEP_CACHE, 0
			}
		}
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

// Read serves [off, off+len(dest)) through FileData, waiting at most the
// read timeout (or until the reader is interrupted) and answering EIO when
// the bytes cannot be had.
func (f *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (_ fuse.ReadResult, errno syscall.Errno) {
	start, n := time.Now(), 0
	// Deferred before recoverOp so that it sees the EIO of a panic.
	defer func() { observeRead(f.observer, start, n, errno) }()
	defer recoverOp(fmt.Sprintf("read %s at %d", f.entry.Path, off), &errno)
	if h, ok := fh.(*passthroughHandle); ok {
		var err error
		n, err = h.f.ReadAt(dest, off)
		if err != nil && n == 0 && off < f.entry.Size {
			return nil, syscall.EIO
		}
		return fuse.ReadResultData(dest[:n]), 0
	}
	if off >= f.entry.Size || f.entry.Data == nil {
		return fuse.ReadResultData(nil), 0
	}
	if rem := f.entry.Size - off; int64(len(dest)) > rem {
		dest = dest[:rem]
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	got, err := f.entry.Data.ReadAt(ctx, dest, off)
	if err != nil && got < len(dest) {
		if errors.Is(err, context.Canceled) {
			return nil, syscall.EINTR
		}
		logf("read %s at %d (%d bytes): %v", f.entry.Path, off, len(dest), err)
		return nil, syscall.EIO
	}
	n = got
	return fuse.ReadResultData(dest[:got]), 0
}

func (f *fileNode) xattr(name string) (string, bool) {
	switch name {
	case XattrProgress:
		if f.entry.Data == nil {
			return fmt.Sprintf("%d/%d", f.entry.Size, f.entry.Size), true
		}
		p, t := f.entry.Data.Progress()
		return fmt.Sprintf("%d/%d", p, t), true
	case XattrDigest:
		return f.entry.Digest, f.entry.Digest != ""
	case XattrSource:
		return f.entry.Source, f.entry.Source != ""
	case XattrMode:
		if m, ok := f.entry.Data.(Moder); ok {
			v := m.Mode()
			return v, v != ""
		}
	}
	return "", false
}

func (f *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (_ uint32, errno syscall.Errno) {
	defer recoverOp("getxattr "+f.entry.Path, &errno)
	if v, ok := f.xattr(attr); ok {
		return copyXattr(dest, []byte(v))
	}
	return f.xattrSet.Getxattr(ctx, attr, dest)
}

func (f *fileNode) Listxattr(ctx context.Context, dest []byte) (_ uint32, errno syscall.Errno) {
	defer recoverOp("listxattr "+f.entry.Path, &errno)
	var names []string
	for _, n := range []string{XattrProgress, XattrDigest, XattrSource, XattrMode} {
		if _, ok := f.xattr(n); ok {
			names = append(names, n)
		}
	}
	return listXattrs(dest, append(names, f.xattrSet.names()...))
}

// xattrSet serves a fixed map of extended attributes.
type xattrSet struct {
	xattrs map[string][]byte
}

func (x *xattrSet) Getxattr(ctx context.Context, attr string, dest []byte) (_ uint32, errno syscall.Errno) {
	defer recoverOp("getxattr", &errno)
	v, ok := x.xattrs[attr]
	if !ok {
		return 0, syscall.ENODATA
	}
	return copyXattr(dest, v)
}

func (x *xattrSet) Listxattr(ctx context.Context, dest []byte) (_ uint32, errno syscall.Errno) {
	defer recoverOp("listxattr", &errno)
	return listXattrs(dest, x.names())
}

func (x *xattrSet) names() []string {
	out := make([]string, 0, len(x.xattrs))
	for k := range x.xattrs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func copyXattr(dest, v []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func listXattrs(dest []byte, names []string) (uint32, syscall.Errno) {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(0)
	}
	if len(dest) == 0 {
		return uint32(b.Len()), 0
	}
	if len(dest) < b.Len() {
		return uint32(b.Len()), syscall.ERANGE
	}
	return uint32(copy(dest, b.String())), 0
}

// passthroughHandle is an open file whose bytes are all local: the kernel
// reads the backing file directly when passthrough is available.
type passthroughHandle struct{ f *os.File }

var (
	_ = (fs.FilePassthroughFder)((*passthroughHandle)(nil))
	_ = (fs.FileReleaser)((*passthroughHandle)(nil))
)

func (h *passthroughHandle) PassthroughFd() (int, bool) { return int(h.f.Fd()), true }

func (h *passthroughHandle) Release(ctx context.Context) syscall.Errno {
	h.f.Close()
	return 0
}

// recoverOp turns a panic in a FUSE handler into EIO for that one call,
// with a log line: a bug or a hostile input must not take the mount (and
// every other mount of the process) down. Use as
// defer recoverOp("read x", &errno).
func recoverOp(op string, errno *syscall.Errno) {
	if v := recover(); v != nil {
		Log.Errorf("FUSE %s: recovered from panic: %v\n%s", op, v, debug.Stack())
		*errno = syscall.EIO
	}
}
