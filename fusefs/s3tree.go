package fusefs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/damselfly-p2p/damselfly/objstore"
)

// XattrListing, on the directories of an s3 prefix mount, says where the
// directory's listing came from: "store" (listed from the store during
// this mount) or "cached <RFC 3339 time>" (the store was unreachable; the
// listing is the one kept from an earlier mount).
const XattrListing = "user.damselfly.listing"

// maxNameLen is the longest file name Linux accepts (NAME_MAX), in bytes.
const maxNameLen = 255

// MaxDirEntries bounds the entries of one directory of an s3 prefix
// mount: a listing that goes on past it (a hostile or broken store, or a
// directory too large to hold in memory) fails with EIO.
const MaxDirEntries = 4 << 20

// maxSkipWarnings caps the warnings one mount logs about keys it leaves
// out, so that a hostile listing cannot flood the log.
const maxSkipWarnings = 50

// Lister lists one directory level of a bucket lazily, page by page, and
// reports each key it leaves out; *objstore.Client is one.
type Lister interface {
	ListWithSkips(ctx context.Context, bucket, prefix string, skipped func(key, reason string)) iter.Seq2[objstore.Entry, error]
}

// ObjectOpener opens the content of one object, as its listing describes
// it (size, ETag), for lazy reads.
type ObjectOpener func(ctx context.Context, obj objstore.ObjectInfo) (Content, error)

// Listings keeps directory listings across mounts, so that a remount with
// the store unreachable still shows what was listed before (and reads what
// the data dir holds of it).
type Listings interface {
	// Load returns the listing kept for prefix and when it was made.
	Load(prefix string) (entries []objstore.Entry, listed time.Time, ok bool)
	// Store keeps the listing of prefix, replacing an older one.
	Store(prefix string, entries []objstore.Entry, listed time.Time) error
}

// PackOpener opens the pack of the small objects of directory dir (see
// objstore.Pack) for lazy reads.
type PackOpener func(ctx context.Context, dir objstore.URL, pack *objstore.Pack) (Content, error)

// S3TreeOptions describe a prefix of a bucket to mount as a tree.
type S3TreeOptions struct {
	Bucket string
	// Prefix is the key prefix shown as the mount's root: "" (the whole
	// bucket) or ending in "/".
	Prefix string
	Lister Lister
	// Open opens a file's content at its first read.
	Open ObjectOpener
	// OpenPack, when set, groups the objects of each directory smaller
	// than objstore.PackMaxObject into one pack, opened (once) at the
	// first read of any of them; each of those files reads its range of
	// the pack. nil: every object is a task of its own.
	OpenPack PackOpener
	// ReadTimeout bounds each read (EIO after it); 0 means 30 s.
	ReadTimeout time.Duration
	// ListTimeout bounds the listing of one directory (all its pages);
	// 0 means 2 minutes.
	ListTimeout time.Duration
	// Listings, when set, keeps every listing made, and stands in for the
	// store when it cannot be reached (not when it refuses the
	// credentials or says the bucket is missing).
	Listings Listings
}

// S3Root is the root directory of a mounted prefix. Each directory is
// listed when it is first looked up in or read, and its listing is kept for
// the mount's life: objects added to the store later show after a remount.
type S3Root struct {
	s3Dir
}

var (
	_ = (fs.NodeLookuper)((*S3Root)(nil))
	_ = (fs.NodeReaddirer)((*S3Root)(nil))
	_ = (fs.NodeGetattrer)((*S3Root)(nil))
	_ = (fs.NodeGetxattrer)((*S3Root)(nil))
	_ = (fs.NodeListxattrer)((*S3Root)(nil))
)

// NewS3Tree starts listing the prefix's top level and returns once its
// first entry arrived (so that refused credentials or a missing bucket
// fail here, before anything is mounted, while a top level of 100,000
// objects lists on in the background: reading the root waits for it), or
// once the listing ended. The tree lists every other directory as it is
// walked.
func NewS3Tree(ctx context.Context, opts S3TreeOptions) (*S3Root, error) {
	if opts.Bucket == "" || opts.Lister == nil || opts.Open == nil {
		return nil, errors.New("s3 tree: bucket, lister and opener are required")
	}
	if opts.Prefix != "" && opts.Prefix[len(opts.Prefix)-1] != '/' {
		opts.Prefix += "/"
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 30 * time.Second
	}
	if opts.ListTimeout <= 0 {
		opts.ListTimeout = 2 * time.Minute
	}
	t := &s3Tree{opts: opts, mounted: time.Now(), inos: map[uint64]string{}, dirs: map[string]*s3Dir{}}
	r := &S3Root{s3Dir{tree: t, prefix: opts.Prefix}}
	first := make(chan struct{})
	signal := sync.OnceFunc(func() { close(first) })
	done := make(chan error, 1)
	go func() {
		err := r.listWith(context.WithoutCancel(ctx), signal)
		select {
		case <-first:
			if err != nil {
				Log.Warnf("list the top level: %v; reading the root tries again", err)
			}
		default:
		}
		if err == nil && r.Len() == 0 {
			Log.Warnf("%s lists no objects: the mount is empty", objstore.URL{Bucket: opts.Bucket, Key: opts.Prefix})
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
	case <-first:
	case <-ctx.Done():
		return nil, fmt.Errorf("list %s: %w", objstore.URL{Bucket: opts.Bucket, Key: opts.Prefix}, ctx.Err())
	}
	return r, nil
}

// Observe makes o see every read of the tree's files. Call it before Mount.
func (r *S3Root) Observe(o Observer) { r.tree.observer = o }

// Len is the number of entries of the top level, 0 while it is being
// listed.
func (r *S3Root) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// s3Tree is what the directories of one mount share.
type s3Tree struct {
	opts     S3TreeOptions
	mounted  time.Time
	observer Observer

	mu      sync.Mutex
	inos    map[uint64]string // inode number -> key, to catch collisions
	dirs    map[string]*s3Dir // directories below the root by prefix (see dir)
	skipped int               // keys left out, for capping warnings
	// offlineUntil is set when the store could not be reached: until
	// then, directories with a kept listing show it without asking the
	// store again (each attempt costs the client's retries).
	offlineUntil time.Time
}

// offlineRetry is how long a tree found the store unreachable shows kept
// listings before asking the store again.
const offlineRetry = 30 * time.Second

// skip logs that key is left out of the tree, and why.
func (t *s3Tree) skip(key, reason string) {
	t.mu.Lock()
	t.skipped++
	n := t.skipped
	t.mu.Unlock()
	switch {
	case n <= maxSkipWarnings:
		Log.Warnf("s3 tree: leaving out %s: %s", objstore.URL{Bucket: t.opts.Bucket, Key: key}.String(), reason)
	case n == maxSkipWarnings+1:
		Log.Warnf("s3 tree: more than %d keys left out; not logging the others", maxSkipWarnings)
	}
}

// ino returns the inode number of key: a hash of the bucket and key, so
// that it is the same on every mount, below the automatic inode numbers
// (2^63 and up). On the rare collision of two keys it returns 0 (an
// automatic number) for the second.
func (t *s3Tree) ino(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(t.opts.Bucket))
	h.Write([]byte{0})
	h.Write([]byte(key))
	ino := h.Sum64() &^ (1 << 63)
	if ino < 2 {
		ino += 2 // 0 is none, 1 the root
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if k, ok := t.inos[ino]; ok && k != key {
		Log.Warnf("s3 tree: %s and %s hash to one inode number; the second gets a number of this mount only", k, key)
		return 0
	}
	t.inos[ino] = key
	return ino
}

// readDir lists prefix from the store, or, when the store cannot be
// reached and a listing was kept, returns that one (with when it was
// made; zero for a fresh listing).
//
// first, when not nil, is called once the first entry arrived.
func (t *s3Tree) readDir(ctx context.Context, prefix string, first func()) ([]objstore.Entry, time.Time, error) {
	what := objstore.URL{Bucket: t.opts.Bucket, Key: prefix}
	t.mu.Lock()
	offline := time.Now().Before(t.offlineUntil)
	t.mu.Unlock()
	if offline {
		if ents, at, ok := t.opts.Listings.Load(prefix); ok {
			Log.Infof("store unreachable a moment ago; showing the listing of %s kept from %s", what, at.Format(time.RFC3339))
			return t.clean(prefix, ents, false), at, nil
		}
	}
	lctx, cancel := context.WithTimeout(ctx, t.opts.ListTimeout)
	defer cancel()
	var raw []objstore.Entry
	var err error
	for e, lerr := range t.opts.Lister.ListWithSkips(lctx, t.opts.Bucket, prefix, t.skip) {
		if lerr != nil {
			err = lerr
			break
		}
		if len(raw) >= MaxDirEntries {
			return nil, time.Time{}, fmt.Errorf("list %s: more than %d entries in one directory; refusing to hold them", what, MaxDirEntries)
		}
		raw = append(raw, e)
		if first != nil && len(raw) == 1 {
			first()
		}
	}
	if err != nil {
		if t.opts.Listings != nil && unreachable(ctx, err) {
			t.mu.Lock()
			t.offlineUntil = time.Now().Add(offlineRetry)
			t.mu.Unlock()
			if ents, at, ok := t.opts.Listings.Load(prefix); ok {
				Log.Warnf("%v; showing the listing of %s kept from %s (offline: only what the data dir holds can be read)",
					err, what, at.Format(time.RFC3339))
				return t.clean(prefix, ents, false), at, nil
			}
			return nil, time.Time{}, fmt.Errorf("%w (and no listing of it was kept from an earlier mount)", err)
		}
		return nil, time.Time{}, err // it names the operation and the prefix
	}
	ents := t.clean(prefix, raw, true)
	if t.opts.Listings != nil {
		if err := t.opts.Listings.Store(prefix, ents, time.Now()); err != nil {
			Log.Warnf("keep the listing of %s for offline remounts: %v", what, err)
		}
	}
	return ents, time.Time{}, nil
}

// unreachable reports whether err says the store could not be reached (or
// answered nothing useful), as opposed to a refusal or a missing bucket
// that a kept listing must not hide.
func unreachable(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, context.Canceled) &&
		!errors.Is(err, objstore.ErrAccessDenied) && !errors.Is(err, objstore.ErrNoCredentials) &&
		!errors.Is(err, objstore.ErrNotFound)
}

// clean drops the entries a tree cannot show (names that are not one path
// element, over-long names, keys not matching their names, absurd sizes),
// logging them when warn, and returns the rest sorted by name, one entry
// per name: when a name is both an object and a directory, the directory.
func (t *s3Tree) clean(prefix string, ents []objstore.Entry, warn bool) []objstore.Entry {
	skip := func(key, reason string) {
		if warn {
			t.skip(key, reason)
		}
	}
	out := make([]objstore.Entry, 0, len(ents))
	for _, e := range ents {
		want := prefix + e.Name
		if e.IsDir {
			want += "/"
		}
		switch {
		case e.Name == "" || e.Name == "." || e.Name == "..":
			skip(e.Key, fmt.Sprintf("the name %q is not a file name", e.Name))
		case len(e.Name) > maxNameLen:
			skip(e.Key, fmt.Sprintf("a name of %d bytes (longer than %d)", len(e.Name), maxNameLen))
		case !validName(e.Name):
			skip(e.Key, `a "/" or NUL byte in the name`)
		case e.Key != want:
			skip(e.Key, fmt.Sprintf("its name %q does not match its key under %q", e.Name, prefix))
		case !e.IsDir && (e.Size < 0 || e.Size > MaxFileSize):
			skip(e.Key, fmt.Sprintf("a size of %d bytes", e.Size))
		default:
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b objstore.Entry) int {
		if c := cmp.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		switch {
		case a.IsDir == b.IsDir:
			return 0
		case a.IsDir:
			return -1
		}
		return 1
	})
	kept := out[:0]
	for _, e := range out {
		if n := len(kept); n > 0 && kept[n-1].Name == e.Name {
			// Directories sort first: the kept one is a directory when
			// either is.
			if warn && kept[n-1].IsDir && !e.IsDir {
				Log.Warnf("s3 tree: %s is both an object and a directory; showing the directory",
					objstore.URL{Bucket: t.opts.Bucket, Key: e.Key})
			} else {
				skip(e.Key, "listed twice")
			}
			continue
		}
		kept = append(kept, e)
	}
	return kept
}

func validName(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return false
		}
	}
	return true
}

// s3Dir is one directory of a mounted prefix: the common prefix Key.
type s3Dir struct {
	fs.Inode
	tree   *s3Tree
	parent *s3Dir // nil for the root
	prefix string // "" or ending in "/"

	listMu  sync.Mutex // held while listing: concurrent first uses share one
	mu      sync.Mutex // guards the fields below
	listed  bool
	cached  time.Time // when the kept listing shown was made; zero: from the store
	entries []objstore.Entry
	inos    []uint64
	byName  map[string]int
	subdirs uint32
	pack    *dirPack // the small objects' pack, nil without one
}

// dirPack is a directory's pack, opened at the first read of a member.
type dirPack struct {
	pack *objstore.Pack
	lc   *lazyContent
	dir  *s3Dir
	// starts counts reads from the start of a member: the second makes
	// a reader going through the directory (see packAhead).
	starts atomic.Int32
}

var (
	_ = (fs.NodeLookuper)((*s3Dir)(nil))
	_ = (fs.NodeReaddirer)((*s3Dir)(nil))
	_ = (fs.NodeGetattrer)((*s3Dir)(nil))
	_ = (fs.NodeGetxattrer)((*s3Dir)(nil))
	_ = (fs.NodeListxattrer)((*s3Dir)(nil))
)

// list lists the directory unless it was: a failure is not kept, so the
// next use tries again. The listing does not end with the caller's
// request: the kernel interrupts a FUSE request whenever its caller gets a
// signal (a Go reader's preemption signals do), and one interrupted lookup
// must not throw away the listing the directory's other users wait for
// (it is bounded by ListTimeout instead).
func (d *s3Dir) list(ctx context.Context) error {
	return d.listWith(context.WithoutCancel(ctx), nil)
}

// listWith is list calling first once the first entry arrived.
func (d *s3Dir) listWith(ctx context.Context, first func()) error {
	d.listMu.Lock()
	defer d.listMu.Unlock()
	d.mu.Lock()
	listed := d.listed
	d.mu.Unlock()
	if listed {
		return nil
	}
	ents, cached, err := d.tree.readDir(ctx, d.prefix, first)
	if err != nil {
		return err
	}
	byName := make(map[string]int, len(ents))
	inos := make([]uint64, len(ents))
	var subdirs uint32
	for i, e := range ents {
		byName[e.Name] = i
		inos[i] = d.tree.ino(e.Key)
		if e.IsDir {
			subdirs++
		}
	}
	pack := d.tree.newPack(d, ents)
	d.mu.Lock()
	d.entries, d.cached, d.byName, d.inos, d.subdirs, d.pack = ents, cached, byName, inos, subdirs, pack
	d.listed = true
	d.mu.Unlock()
	return nil
}

// newPack returns the pack of the small objects among ents, the listing of
// directory d: nil with no pack opener or fewer than two of them.
func (t *s3Tree) newPack(d *s3Dir, ents []objstore.Entry) *dirPack {
	if t.opts.OpenPack == nil {
		return nil
	}
	var small []objstore.ObjectInfo
	for _, e := range ents {
		if !e.IsDir && e.Size > 0 && e.Size < objstore.PackMaxObject && e.ETag != "" {
			small = append(small, e.Info(t.opts.Bucket))
		}
	}
	if len(small) < 2 {
		return nil
	}
	dir := objstore.URL{Bucket: t.opts.Bucket, Key: d.prefix}
	pack, err := objstore.NewPack(t.opts.Bucket, small)
	if err != nil {
		Log.Warnf("%s: no pack of its small objects (each is read on its own): %v", dir, err)
		return nil
	}
	open := t.opts.OpenPack
	return &dirPack{pack: pack, dir: d, lc: &lazyContent{url: dir.String(),
		open: func(ctx context.Context, _ string) (Content, error) { return open(ctx, dir, pack) }}}
}

func (d *s3Dir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer recoverOp("getattr "+d.prefix, &errno)
	d.mu.Lock()
	// Before its listing a directory's subdirectories are unknown: a link
	// count of 1 says so (find and fts then do not guess from it).
	nlink := uint32(1)
	if d.listed {
		nlink = 2 + d.subdirs
	}
	d.mu.Unlock()
	out.Attr = fuse.Attr{Mode: syscall.S_IFDIR | 0o555, Size: dirSize, Nlink: nlink}
	out.SetTimes(nil, &d.tree.mounted, &d.tree.mounted)
	out.Blocks = (out.Size + 511) / 512
	return 0
}

func (d *s3Dir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *fs.Inode, errno syscall.Errno) {
	defer recoverOp("lookup "+d.prefix+name, &errno)
	if err := d.list(ctx); err != nil {
		logf("lookup %s in %s: %v", name, objstore.URL{Bucket: d.tree.opts.Bucket, Key: d.prefix}, err)
		return nil, syscall.EIO
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	i, ok := d.byName[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	child := d.GetChild(name)
	if child == nil {
		e := d.entries[i]
		var node fs.InodeEmbedder
		mode := uint32(syscall.S_IFREG)
		if e.IsDir {
			node, mode = d.tree.dir(d, e.Key), syscall.S_IFDIR
		} else {
			node = d.tree.file(e, d.pack)
		}
		child = d.NewPersistentInode(ctx, node, fs.StableAttr{Mode: mode, Ino: d.inos[i]})
		d.AddChild(name, child, false)
	}
	var a fuse.AttrOut
	if ga, ok := child.Operations().(fs.NodeGetattrer); ok && ga.Getattr(ctx, nil, &a) == 0 {
		out.Attr = a.Attr
	}
	return child, 0
}

// file is the node of an object: read-only, its content opened at the
// first read.
func (t *s3Tree) file(e objstore.Entry, pack *dirPack) *fileNode {
	info := e.Info(t.opts.Bucket)
	url := info.URL().String()
	mtime := e.LastModified
	if mtime.IsZero() {
		mtime = t.mounted
	}
	open := func(ctx context.Context, _ string) (Content, error) { return t.opts.Open(ctx, info) }
	entry := Entry{Path: e.Key, Mode: 0o444, Size: e.Size, ModTime: mtime, Source: url,
		Data: URLData(url, e.Size, open, nil)}
	if pack != nil {
		if off, size, ok := pack.pack.Member(e.Key); ok && size == e.Size {
			entry.Data = &packData{pack: pack, off: off, size: size}
		}
	}
	return &fileNode{entry: entry, attr: entry.attr(), timeout: t.opts.ReadTimeout, observer: t.observer}
}

func (d *s3Dir) Readdir(ctx context.Context) (_ fs.DirStream, errno syscall.Errno) {
	defer recoverOp("readdir "+d.prefix, &errno)
	if err := d.list(ctx); err != nil {
		logf("read directory %s: %v", objstore.URL{Bucket: d.tree.opts.Bucket, Key: d.prefix}, err)
		return nil, syscall.EIO
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]fuse.DirEntry, len(d.entries))
	for i, e := range d.entries {
		out[i] = fuse.DirEntry{Name: e.Name, Mode: syscall.S_IFREG, Ino: d.inos[i]}
		if e.IsDir {
			out[i].Mode = syscall.S_IFDIR
		}
	}
	return fs.NewListDirStream(out), 0
}

func (d *s3Dir) xattr(name string) (string, bool) {
	switch name {
	case XattrSource:
		return objstore.URL{Bucket: d.tree.opts.Bucket, Key: d.prefix}.String(), true
	case XattrListing:
		d.mu.Lock()
		defer d.mu.Unlock()
		switch {
		case !d.listed:
			return "", false
		case d.cached.IsZero():
			return "store", true
		}
		return "cached " + d.cached.UTC().Format(time.RFC3339), true
	}
	return "", false
}

func (d *s3Dir) Getxattr(ctx context.Context, attr string, dest []byte) (_ uint32, errno syscall.Errno) {
	defer recoverOp("getxattr "+d.prefix, &errno)
	if v, ok := d.xattr(attr); ok {
		return copyXattr(dest, []byte(v))
	}
	return 0, syscall.ENODATA
}

func (d *s3Dir) Listxattr(ctx context.Context, dest []byte) (_ uint32, errno syscall.Errno) {
	defer recoverOp("listxattr "+d.prefix, &errno)
	var names []string
	for _, n := range []string{XattrSource, XattrListing} {
		if _, ok := d.xattr(n); ok {
			names = append(names, n)
		}
	}
	return listXattrs(dest, names)
}

// packData is a file whose bytes are a range of its directory's pack.
type packData struct {
	pack      *dirPack
	off, size int64
}

var _ Moder = (*packData)(nil)

func (m *packData) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	c, err := m.pack.lc.get(ctx)
	if err != nil {
		return 0, err
	}
	if off == 0 && m.pack.starts.Add(1) == 2 {
		go m.pack.dir.tree.packAhead(m.pack.dir)
	}
	if c.Size() != m.pack.pack.Size() {
		return 0, fmt.Errorf("pack %s: content is %d bytes, the listing says %d", m.pack.pack, c.Size(), m.pack.pack.Size())
	}
	if off >= m.size {
		return 0, nil
	}
	return c.ReadAtContext(ctx, p[:min(int64(len(p)), m.size-off)], m.off+off)
}

// Progress is the file's size once the whole pack is present, else 0
// (the content says how much of the pack it holds, not where).
func (m *packData) Progress() (int64, int64) {
	if c := m.pack.lc.peek(); c != nil && c.Complete() {
		return m.size, m.size
	}
	return 0, m.size
}

// PassthroughPath is none: the pack's data file holds the file at an
// offset.
func (m *packData) PassthroughPath() string { return "" }

func (m *packData) Mode() string {
	if md, ok := m.pack.lc.peek().(Moder); ok {
		return md.Mode()
	}
	return ""
}

// dir returns the node of directory prefix, a subdirectory of parent: the
// same node whether Lookup or packAhead asks first, so that a directory is
// listed, and its pack opened, once.
func (t *s3Tree) dir(parent *s3Dir, prefix string) *s3Dir {
	t.mu.Lock()
	defer t.mu.Unlock()
	d, ok := t.dirs[prefix]
	if !ok {
		d = &s3Dir{tree: t, parent: parent, prefix: prefix}
		t.dirs[prefix] = d
	}
	return d
}

// packAheadDirs is how many directories after one being read through get
// their packs opened ahead of the reads.
const packAheadDirs = 2

// packAheadSteps bounds the directories packAhead walks (and lists) to
// find them.
const packAheadSteps = 8

// packAhead opens the packs of the packAheadDirs directories after d in
// key order (each opened pack fetches itself, see OpenPack), once a
// second file of d's pack was read from its start: a data loader going
// through a tree then finds the next directories arriving instead of
// waiting for each in turn, while a lone read, a find or a stat opens
// nothing more.
func (t *s3Tree) packAhead(d *s3Dir) {
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.ListTimeout)
	defer cancel()
	for opened, steps := 0, 0; opened < packAheadDirs && steps < packAheadSteps; steps++ {
		if d = t.nextDir(ctx, d); d == nil {
			return
		}
		d.mu.Lock()
		p := d.pack
		d.mu.Unlock()
		if p == nil {
			continue
		}
		if _, err := p.lc.get(ctx); err != nil {
			Log.Debugf("open the pack of %s ahead of reads: %v", objstore.URL{Bucket: t.opts.Bucket, Key: d.prefix}, err)
			return
		}
		opened++
	}
}

// nextDir returns the directory after d in key order (its first
// subdirectory, else the next subdirectory of the nearest ancestor after
// the one on the way), listed; nil at the end of the tree or when a
// listing fails.
func (t *s3Tree) nextDir(ctx context.Context, d *s3Dir) *s3Dir {
	if err := d.list(ctx); err != nil {
		return nil
	}
	after := "" // the subdirectory of d to look after; "": from the start
	for d != nil {
		d.mu.Lock()
		var next string
		seen := after == ""
		for _, e := range d.entries {
			if !e.IsDir {
				continue
			}
			if seen {
				next = e.Key
				break
			}
			seen = e.Key == after
		}
		d.mu.Unlock()
		if next != "" {
			n := t.dir(d, next)
			if err := n.list(ctx); err != nil {
				return nil
			}
			return n
		}
		after, d = d.prefix, d.parent
	}
	return nil
}
