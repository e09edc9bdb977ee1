package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/xattr"

	"github.com/damselfly-p2p/damselfly/objstore"
)

// fakeLister serves canned listings per prefix, counting them; err, when
// set for a prefix, fails its listing.
type fakeLister struct {
	mu    sync.Mutex
	dirs  map[string][]objstore.Entry
	err   map[string]error
	lists map[string]int
	// gate, when set for a prefix, holds its listing after the first
	// entry until it is closed.
	gate map[string]chan struct{}
}

func (f *fakeLister) ListWithSkips(ctx context.Context, bucket, prefix string, skipped func(key, reason string)) iter.Seq2[objstore.Entry, error] {
	return func(yield func(objstore.Entry, error) bool) {
		f.mu.Lock()
		f.lists[prefix]++
		ents, err, gate := f.dirs[prefix], f.err[prefix], f.gate[prefix]
		f.mu.Unlock()
		if skipped != nil && prefix == "p/" {
			skipped("p//x", "an empty path element")
		}
		for i, e := range ents {
			if err != nil {
				yield(objstore.Entry{}, err) // as a refused first page
				return
			}
			if !yield(e, nil) {
				return
			}
			if i == 0 && gate != nil {
				select {
				case <-gate:
				case <-ctx.Done():
					yield(objstore.Entry{}, ctx.Err())
					return
				}
			}
		}
		if err != nil {
			yield(objstore.Entry{}, err)
		}
	}
}

func (f *fakeLister) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists[prefix]
}

func (f *fakeLister) setErr(prefix string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err[prefix] = err
}

// objContent is an object's content in memory.
type objContent struct{ data []byte }

func (m *objContent) Size() int64 { return int64(len(m.data)) }
func (m *objContent) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	return copy(p, m.data[off:]), nil
}
func (m *objContent) Present() int64   { return int64(len(m.data)) }
func (m *objContent) Complete() bool   { return true }
func (m *objContent) DataPath() string { return "" }
func (m *objContent) Mode() string     { return "direct" }

// fakeStore is a bucket of objects and the opener of their contents.
type fakeStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	opens   map[string]int
}

func (s *fakeStore) open(ctx context.Context, obj objstore.ObjectInfo) (Content, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens[obj.Key]++
	data, ok := s.objects[obj.Key]
	if !ok || obj.ETag != "etag-"+obj.Key {
		return nil, errors.New("no such object")
	}
	return &objContent{data: data}, nil
}

func (s *fakeStore) totalOpens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.opens {
		n += c
	}
	return n
}

var lastModified = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func obj(key string, data []byte) objstore.Entry {
	name := key[strings.LastIndex(key, "/")+1:]
	return objstore.Entry{Name: name, Key: key, Size: int64(len(data)), ETag: "etag-" + key, LastModified: lastModified}
}

func dir(key string) objstore.Entry {
	name := strings.TrimSuffix(key, "/")
	name = name[strings.LastIndex(name, "/")+1:]
	return objstore.Entry{Name: name, Key: key, IsDir: true}
}

// newFakeBucket is a prefix p/ with a file, an empty file, a directory a/
// (with a subdirectory), a name that is both an object and a directory,
// a directory whose listing fails, and hostile entries.
func newFakeBucket() (*fakeLister, *fakeStore) {
	st := &fakeStore{objects: map[string][]byte{
		"p/b.bin":     bytes.Repeat([]byte("b"), 5000),
		"p/empty":     nil,
		"p/a/x.txt":   []byte("x content"),
		"p/a/c/deep":  []byte("deep"),
		"p/both":      []byte("object hidden by the directory"),
		"p/both/in":   []byte("in"),
		"p/bad/never": []byte("never"),
	}, opens: map[string]int{}}
	l := &fakeLister{lists: map[string]int{}, err: map[string]error{}, dirs: map[string][]objstore.Entry{
		"p/": {
			dir("p/a/"), dir("p/both/"), dir("p/bad/"),
			obj("p/b.bin", st.objects["p/b.bin"]), obj("p/empty", nil), obj("p/both", st.objects["p/both"]),
			{Name: "..", Key: "p/..", Size: 1},
			{Name: ".", Key: "p/./", IsDir: true},
			{Name: "", Key: "p/", Size: 1},
			{Name: "n\x00ul", Key: "p/n\x00ul", Size: 1},
			{Name: "sl/ash", Key: "p/sl/ash", Size: 1},
			{Name: strings.Repeat("l", 256), Key: "p/" + strings.Repeat("l", 256), Size: 1},
			{Name: "liar", Key: "p/other", Size: 1},
			{Name: "neg", Key: "p/neg", Size: -1},
			obj("p/b.bin", st.objects["p/b.bin"]), // listed twice
		},
		"p/a/":    {obj("p/a/x.txt", st.objects["p/a/x.txt"]), dir("p/a/c/")},
		"p/a/c/":  {obj("p/a/c/deep", st.objects["p/a/c/deep"])},
		"p/both/": {obj("p/both/in", st.objects["p/both/in"])},
		"p/bad/":  {obj("p/bad/never", st.objects["p/bad/never"])},
	}}
	return l, st
}

func mountS3(t *testing.T, root *S3Root) string {
	t.Helper()
	mnt := t.TempDir()
	server, err := Mount(mnt, root, MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	return mnt
}

func TestS3TreeLazy(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	l, st := newFakeBucket()
	l.setErr("p/bad/", errors.New("connection reset"))
	opts := S3TreeOptions{Bucket: "bkt", Prefix: "p/", Lister: l, Open: st.open, ReadTimeout: time.Second}
	root, err := NewS3Tree(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if l.count("p/") != 1 || l.count("p/a/") != 0 {
		t.Fatalf("NewS3Tree listed %v; want the top level once, nothing below", l.lists)
	}
	mnt := mountS3(t, root)

	// The top level: sorted, hostile names left out, one entry per name.
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"a", "b.bin", "bad", "both", "empty"}; strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("top level = %q, want %q", names, want)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "both")); err != nil || !fi.IsDir() {
		t.Fatalf("both: %v %v; want the directory to win over the object", fi, err)
	}
	// Stat of files: sizes and mtimes from the listing, nothing opened,
	// no directory below listed.
	fi, err := os.Stat(filepath.Join(mnt, "b.bin"))
	if err != nil || fi.Size() != 5000 || !fi.ModTime().Equal(lastModified) || fi.Mode().Perm() != 0o444 {
		t.Fatalf("stat b.bin = %v %v", fi, err)
	}
	if st.totalOpens() != 0 || l.count("p/a/") != 0 || l.count("p/") != 1 {
		t.Fatalf("after readdir and stat: opens %v, lists %v; want no open, only the top level listed once", st.opens, l.lists)
	}

	// A walk lists each directory once and opens nothing.
	var files []string
	err = filepath.WalkDir(mnt, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if strings.HasSuffix(p, "/bad") {
				return filepath.SkipDir // its listing fails: EIO
			}
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(mnt, p)
			files = append(files, rel)
			if _, err := os.Stat(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if want := "a/c/deep,a/x.txt,b.bin,both/in,empty"; strings.Join(files, ",") != want {
		t.Errorf("walk found %q, want %s", files, want)
	}
	for _, p := range []string{"p/", "p/a/", "p/a/c/", "p/both/"} {
		if n := l.count(p); n != 1 {
			t.Errorf("%s listed %d times, want once", p, n)
		}
	}
	if st.totalOpens() != 0 {
		t.Errorf("the walk opened %v", st.opens)
	}

	// A directory whose listing fails gives EIO, and is tried again.
	if _, err := os.ReadDir(filepath.Join(mnt, "bad")); !errors.Is(err, syscall.EIO) {
		t.Errorf("readdir of a failing directory: %v, want EIO", err)
	}
	l.setErr("p/bad/", nil)
	if got, err := os.ReadFile(filepath.Join(mnt, "bad", "never")); err != nil || string(got) != "never" {
		t.Errorf("after the store recovered: %q %v", got, err)
	}

	// Reads open the object once, through the opener, from its listing.
	for i := 0; i < 2; i++ {
		for key, data := range st.objects {
			if key == "p/both" || key == "p/bad/never" {
				continue
			}
			got, err := os.ReadFile(filepath.Join(mnt, strings.TrimPrefix(key, "p/")))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %s: %v (%d bytes, want %d)", key, err, len(got), len(data))
			}
		}
	}
	st.mu.Lock()
	for key, n := range st.opens {
		if n != 1 {
			t.Errorf("%s opened %d times, want once", key, n)
		}
	}
	if st.opens["p/empty"] != 0 {
		t.Errorf("the empty object was opened")
	}
	st.mu.Unlock()
	file := filepath.Join(mnt, "a", "x.txt")
	for name, want := range map[string]string{XattrMode: "direct", XattrSource: "s3://bkt/p/a/x.txt", XattrProgress: "9/9"} {
		if v, err := xattr.Get(file, name); err != nil || string(v) != want {
			t.Errorf("%s = %q %v, want %q", name, v, err, want)
		}
	}
	if v, err := xattr.Get(filepath.Join(mnt, "a"), XattrListing); err != nil || string(v) != "store" {
		t.Errorf("%s of a = %q %v, want store", XattrListing, v, err)
	}
	if _, err := os.OpenFile(file, os.O_WRONLY, 0); err == nil {
		t.Error("opened a file of the tree for writing")
	}

	// Inode numbers are the same on another mount of the prefix.
	ino := func(mnt, p string) uint64 {
		var s syscall.Stat_t
		if err := syscall.Stat(filepath.Join(mnt, p), &s); err != nil {
			t.Fatal(err)
		}
		return s.Ino
	}
	root2, err := NewS3Tree(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	mnt2 := mountS3(t, root2)
	for _, p := range []string{"a/c/deep", "a/c", "b.bin", "both/in"} {
		if a, b := ino(mnt, p), ino(mnt2, p); a != b || a < 2 {
			t.Errorf("%s: inode %d on one mount, %d on another", p, a, b)
		}
	}
	if ino(mnt, "a/x.txt") == ino(mnt, "b.bin") {
		t.Error("two files share an inode number")
	}
}

func TestS3TreeMountErrors(t *testing.T) {
	denied := &objstore.Error{Op: "list", Bucket: "bkt", Key: "p/", Code: "SignatureDoesNotMatch", Err: objstore.ErrAccessDenied}
	unreachable := &objstore.Error{Op: "list", Bucket: "bkt", Key: "p/", Err: errors.New("dial tcp 127.0.0.1:1: connection refused")}
	keep := DirListings{Dir: filepath.Join(t.TempDir(), "listings")}

	// A first mount keeps its listings.
	l, st := newFakeBucket()
	opts := S3TreeOptions{Bucket: "bkt", Prefix: "p", Lister: l, Open: st.open, Listings: keep}
	first, err := NewS3Tree(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.list(context.Background()); err != nil { // the whole top level, kept
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		err      error
		listings Listings
		want     string // "" for a tree from the kept listing
	}{
		{"refused credentials", denied, keep, "check the credentials"},
		{"unreachable, nothing kept", unreachable, DirListings{Dir: t.TempDir()}, "no listing of it was kept"},
		{"unreachable, no keeping", unreachable, nil, "connection refused"},
		{"unreachable, listing kept", unreachable, keep, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.setErr("p/", tt.err)
			o := opts
			o.Listings = tt.listings
			root, err := NewS3Tree(context.Background(), o)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("NewS3Tree: %v; want an error saying %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := root.list(context.Background()); err != nil {
				t.Fatal(err)
			}
			if root.Len() != 5 {
				t.Fatalf("tree from the kept listing has %d entries, want 5", root.Len())
			}
			if v, ok := root.xattr(XattrListing); !ok || !strings.HasPrefix(v, "cached ") {
				t.Fatalf("listing xattr %q, want cached", v)
			}
		})
	}
}

// openPack opens a pack as its objects' bytes laid out by the pack.
func (s *fakeStore) openPack(ctx context.Context, dir objstore.URL, pack *objstore.Pack) (Content, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens["pack:"+dir.Key]++
	data := make([]byte, pack.Size())
	n := 0
	for key, obj := range s.objects {
		if off, size, ok := pack.Member(key); ok {
			copy(data[off:off+size], obj)
			n++
		}
	}
	if n != pack.Len() {
		return nil, errors.New("pack of unknown objects")
	}
	return &objContent{data: data}, nil
}

// TestS3TreePacks reads the small objects of a directory through its
// pack: one open per directory, each file its own bytes; large and empty
// objects are read on their own.
func TestS3TreePacks(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	l, st := newFakeBucket()
	for i := 0; i < 30; i++ {
		key := fmt.Sprintf("p/a/small-%02d", i)
		st.objects[key] = bytes.Repeat([]byte{byte(i)}, 1000+i*37)
		l.dirs["p/a/"] = append(l.dirs["p/a/"], obj(key, st.objects[key]))
	}
	st.objects["p/a/large"] = make([]byte, objstore.PackMaxObject)
	l.dirs["p/a/"] = append(l.dirs["p/a/"], obj("p/a/large", st.objects["p/a/large"]))
	opts := S3TreeOptions{Bucket: "bkt", Prefix: "p/", Lister: l, Open: st.open, OpenPack: st.openPack}
	root, err := NewS3Tree(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountS3(t, root)
	var wg sync.WaitGroup
	errs := make(chan error, len(st.objects))
	for key, data := range st.objects {
		if key == "p/both" || key == "p/bad/never" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := os.ReadFile(filepath.Join(mnt, strings.TrimPrefix(key, "p/")))
			if err != nil || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("read %s: %v (%d bytes, want %d)", key, err, len(got), len(data))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	want := map[string]int{"pack:p/a/": 1, "p/a/large": 1, "p/b.bin": 1, "p/a/c/deep": 1, "p/both/in": 1}
	for k, n := range want {
		if st.opens[k] != n {
			t.Errorf("%s opened %d times, want %d (opens: %v)", k, st.opens[k], n, st.opens)
		}
	}
	for k := range st.opens {
		if strings.HasPrefix(k, "p/a/small") || k == "p/a/x.txt" {
			t.Errorf("%s opened on its own; want it read through the pack", k)
		}
	}
	if v, err := xattr.Get(filepath.Join(mnt, "a/small-03"), XattrProgress); err != nil || string(v) != "1111/1111" {
		t.Errorf("progress of a packed file %q %v", v, err)
	}
}

// TestS3TreeLargeTopLevel: a top level of 100,000 objects mounts once its
// first page arrived; reading the root waits for the rest.
func TestS3TreeLargeTopLevel(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	const n = 100_000
	ents := make([]objstore.Entry, n)
	for i := range ents {
		ents[i] = obj(fmt.Sprintf("big/obj-%06d", i), make([]byte, i%7))
	}
	gate := make(chan struct{})
	l := &fakeLister{lists: map[string]int{}, err: map[string]error{},
		dirs: map[string][]objstore.Entry{"big/": ents}, gate: map[string]chan struct{}{"big/": gate}}
	st := &fakeStore{opens: map[string]int{}}
	made := make(chan *S3Root, 1)
	go func() {
		root, err := NewS3Tree(context.Background(), S3TreeOptions{Bucket: "bkt", Prefix: "big/", Lister: l, Open: st.open})
		if err != nil {
			t.Error(err)
		}
		made <- root
	}()
	var root *S3Root
	select {
	case root = <-made:
	case <-time.After(10 * time.Second):
		close(gate)
		t.Fatal("NewS3Tree waited for the whole top level")
	}
	if root == nil {
		t.FailNow()
	}
	mnt := mountS3(t, root)
	close(gate)
	names, err := os.ReadDir(mnt)
	if err != nil || len(names) != n {
		t.Fatalf("the root shows %d entries (%v), want %d", len(names), err, n)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "obj-099999")); err != nil || fi.Size() != 99999%7 {
		t.Fatalf("stat of the last object: %v %v", fi, err)
	}
}

// TestS3DirListingOutlivesInterrupt: the kernel interrupts a FUSE request
// when its caller gets a signal (Go readers get preemption signals), which
// cancels the request's context. A listing in progress must not end with
// it: the lookup would fail with EIO and the directory's other users would
// list again.
func TestS3DirListingOutlivesInterrupt(t *testing.T) {
	gate := make(chan struct{})
	fl := &fakeLister{dirs: map[string][]objstore.Entry{
		"p/":     {{Name: "sub", Key: "p/sub/", IsDir: true}},
		"p/sub/": {{Name: "a", Key: "p/sub/a", Size: 1, ETag: "etag-p/sub/a"}, {Name: "b", Key: "p/sub/b", Size: 1, ETag: "etag-p/sub/b"}},
	}, err: map[string]error{}, lists: map[string]int{}, gate: map[string]chan struct{}{"p/sub/": gate}}
	fs := &fakeStore{objects: map[string][]byte{}, opens: map[string]int{}}
	root, err := NewS3Tree(context.Background(), S3TreeOptions{Bucket: "b", Prefix: "p/", Lister: fl, Open: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	d := &s3Dir{tree: root.tree, prefix: "p/sub/"}
	ctx, interrupt := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.list(ctx) }()
	for fl.count("p/sub/") == 0 {
		time.Sleep(time.Millisecond)
	}
	interrupt()
	time.Sleep(20 * time.Millisecond)
	close(gate)
	if err := <-done; err != nil {
		t.Fatalf("listing ended with the interrupted request: %v", err)
	}
	if len(d.entries) != 2 || fl.count("p/sub/") != 1 {
		t.Errorf("%d entries after %d listings; want 2 after 1", len(d.entries), fl.count("p/sub/"))
	}
}

// TestS3TreePackAhead: a second file of a directory read from its start
// opens the packs of the next packAheadDirs directories in key order (a
// data loader going through the tree); a walk of the tree and a lone read
// open none ahead.
func TestS3TreePackAhead(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	st := &fakeStore{objects: map[string][]byte{}, opens: map[string]int{}}
	l := &fakeLister{lists: map[string]int{}, err: map[string]error{}, dirs: map[string][]objstore.Entry{}}
	// p/g0/ holds d0..d2 and p/g1/ holds d3..d4: the walk ahead crosses
	// from the last directory of g0 to the first of g1.
	for g, ds := range [][]int{{0, 1, 2}, {3, 4}} {
		gk := fmt.Sprintf("p/g%d/", g)
		l.dirs["p/"] = append(l.dirs["p/"], dir(gk))
		for _, d := range ds {
			dk := fmt.Sprintf("%sd%d/", gk, d)
			l.dirs[gk] = append(l.dirs[gk], dir(dk))
			for f := 0; f < 3; f++ {
				key := fmt.Sprintf("%sf%d", dk, f)
				st.objects[key] = bytes.Repeat([]byte{byte(10*d + f)}, 100+f)
				l.dirs[dk] = append(l.dirs[dk], obj(key, st.objects[key]))
			}
		}
	}
	root, err := NewS3Tree(context.Background(), S3TreeOptions{Bucket: "bkt", Prefix: "p/", Lister: l, Open: st.open, OpenPack: st.openPack})
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountS3(t, root)
	packs := func() []string {
		st.mu.Lock()
		defer st.mu.Unlock()
		var out []string
		for k := range st.opens {
			out = append(out, strings.TrimPrefix(k, "pack:p/"))
		}
		slices.Sort(out)
		return out
	}
	read := func(rel string) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(mnt, rel))
		if want := st.objects["p/"+rel]; err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %s: %v (%d bytes, want %d)", rel, err, len(got), len(want))
		}
	}
	if err := filepath.WalkDir(mnt, func(string, fs.DirEntry, error) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := packs(); len(got) != 0 {
		t.Fatalf("a walk of the tree opened %v", got)
	}
	read("g0/d1/f0")
	time.Sleep(100 * time.Millisecond) // what would be opened ahead has time to
	if got := packs(); !slices.Equal(got, []string{"g0/d1/"}) {
		t.Fatalf("a lone read opened %v, want only its own pack", got)
	}
	read("g0/d1/f1")
	want := []string{"g0/d1/", "g0/d2/", "g1/d3/"}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(packs(), want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := packs(); !slices.Equal(got, want) {
		t.Fatalf("after a second file of g0/d1/: packs %v opened, want %v", got, want)
	}
	read("g0/d1/f2") // a third start opens nothing more
	read("g1/d3/f0")
	time.Sleep(100 * time.Millisecond)
	if got := packs(); !slices.Equal(got, want) {
		t.Fatalf("packs %v opened, want still %v", got, want)
	}
}
