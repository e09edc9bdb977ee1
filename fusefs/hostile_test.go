package fusefs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// tocMutation changes one field of one TOC entry.
type tocMutation struct {
	entry int
	field uint8
	value int64
	str   string
}

const numMutationFields = 12

func (m tocMutation) apply(toc *estargz.JTOC) {
	if len(toc.Entries) == 0 {
		return
	}
	i := m.entry % len(toc.Entries)
	if i < 0 {
		i = -i
	}
	e := toc.Entries[i]
	switch m.field % numMutationFields {
	case 0:
		e.ChunkSize = m.value
	case 1:
		e.Offset = m.value
	case 2:
		e.Size = m.value
	case 3:
		e.ChunkOffset = m.value
	case 4:
		e.InnerOffset = m.value
	case 5:
		e.Name = m.str
	case 6:
		e.LinkName = m.str
	case 7:
		e.Type = m.str
	case 8:
		e.ChunkDigest = m.str
	case 9:
		toc.Entries = append(toc.Entries[:i], toc.Entries[i+1:]...)
	case 10:
		c := *e
		toc.Entries = append(toc.Entries[:i+1], toc.Entries[i:]...)
		toc.Entries[i+1] = &c
	case 11:
		if e.Xattrs == nil {
			e.Xattrs = map[string][]byte{}
		}
		e.Xattrs[m.str] = bytes.Repeat([]byte("x"), int(m.value&0xfffff))
	}
}

// craftedBlob rewrites a real blob's TOC after applying muts: the payload
// is unchanged, so the mutated fields are what reaches the chunk logic.
func craftedBlob(t testing.TB, blob []byte, muts ...tocMutation) []byte {
	rt, err := readTOC(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range muts {
		m.apply(rt.toc)
	}
	var out bytes.Buffer
	out.Write(blob[:rt.tocOffset])
	if _, err := estargz.NewGzipCompressor().WriteTOCAndFooter(&out, rt.tocOffset, rt.toc, sha256.New()); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func entryIndex(t testing.TB, blob []byte, name, typ string) int {
	rt, err := readTOC(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range rt.toc.Entries {
		if e.Name == name && e.Type == typ {
			return i
		}
	}
	t.Fatalf("no %s %s in the TOC", typ, name)
	return 0
}

// exercise opens a blob as a layer and reads every file, as a mount
// would; it must never panic or allocate what the TOC asks blindly.
func exercise(blob []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sg, err := OpenStargz(ctx, &memContent{blob}, "fuzz", "")
	if err != nil {
		return err
	}
	ents, err := sg.Entries(EntriesOptions{OverlayWhiteouts: true})
	if err != nil {
		return err
	}
	if _, err := NewTree(ents, time.Second); err != nil {
		return err
	}
	var errs []error
	buf := make([]byte, 1<<20)
	for _, e := range ents {
		if e.Data == nil {
			continue
		}
		for off := int64(0); off < e.Size && off < 4<<20; off += int64(len(buf)) {
			if _, err := e.Data.ReadAt(ctx, buf, off); err != nil && !errors.Is(err, io.EOF) {
				errs = append(errs, err)
				break
			}
		}
	}
	return errors.Join(errs...)
}

// TestCraftedTOC: hostile TOC fields fail the open or the one file with a
// clear error, never the process.
func TestCraftedTOC(t *testing.T) {
	blob, _ := buildLayer(t, buildTar(t, layerCorpus()), estargz.WithChunkSize(65536))
	bb := entryIndex(t, blob, "bin/busybox", "reg")
	chunk := entryIndex(t, blob, "bin/busybox", "chunk")
	tests := []struct {
		name string
		muts []tocMutation
		want string // in the open or read error
	}{
		{"huge chunk size", []tocMutation{{entry: bb, field: 0, value: 1 << 40}}, "larger than the"},
		{"huge chunk size and size", []tocMutation{{entry: bb, field: 0, value: 1 << 40}, {entry: bb, field: 2, value: 1 << 40}}, "chunk at file offset"},
		{"negative chunk size", []tocMutation{{entry: bb, field: 0, value: -5}}, "negative"},
		{"tiny first chunk, huge file", []tocMutation{{entry: bb, field: 0, value: 1}, {entry: bb, field: 2, value: 1 << 49}}, "chunk"},
		{"size over 1 PiB", []tocMutation{{entry: bb, field: 2, value: 1 << 62}}, "size"},
		{"negative size", []tocMutation{{entry: bb, field: 2, value: -1}}, "size"},
		{"chunk past the blob", []tocMutation{{entry: chunk, field: 1, value: 1 << 40}}, "past the payload"},
		{"negative offset", []tocMutation{{entry: chunk, field: 1, value: -100}}, "negative"},
		{"chunk at the payload's end", []tocMutation{{entry: chunk, field: 1, value: int64(len(blob)) - 200}}, ""},
		{"huge inner offset", []tocMutation{{entry: chunk, field: 4, value: 1 << 40}}, "decompress"},
		{"bad chunk digest", []tocMutation{{entry: chunk, field: 8, value: 0, str: "sha256:" + strings.Repeat("0", 64)}}, "digest mismatch"},
		{"escaping name", []tocMutation{{entry: bb, field: 5, str: "../../etc/shadow"}}, "escapes"},
		{"long name", []tocMutation{{entry: bb, field: 5, str: strings.Repeat("n", 5000)}}, "longer"},
		{"unknown type", []tocMutation{{entry: bb, field: 7, str: "weird"}}, "unknown entry type"},
		{"chunk offset gap", []tocMutation{{entry: chunk, field: 3, value: 1 << 30}}, "chunk at file offset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := exercise(craftedBlob(t, blob, tt.muts...))
			if err == nil {
				t.Fatal("accepted and read without error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestCraftedTOCMounted: a layer whose one file has a bad chunk mounts
// next to a good one; reading that file is EIO, everything else works.
func TestCraftedTOCMounted(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	blob, _ := buildLayer(t, buildTar(t, layerCorpus()), estargz.WithChunkSize(65536))
	chunk := entryIndex(t, blob, "bin/busybox", "chunk")
	bad := craftedBlob(t, blob, tocMutation{entry: chunk, field: 4, value: 1 << 40})
	mounts := map[string]string{}
	for name, b := range map[string][]byte{"good": blob, "bad": bad} {
		sg, err := OpenStargz(context.Background(), &memContent{b}, name, "")
		if err != nil {
			t.Fatal(err)
		}
		ents, err := sg.Entries(EntriesOptions{})
		if err != nil {
			t.Fatal(err)
		}
		root, err := NewTree(ents, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
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
		mounts[name] = mnt
	}
	if _, err := os.ReadFile(filepath.Join(mounts["bad"], "bin/busybox")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of the bad file: %v, want EIO", err)
	}
	for _, mnt := range mounts {
		if ents, err := os.ReadDir(filepath.Join(mnt, "etc")); err != nil || len(ents) == 0 {
			t.Fatalf("ls %s/etc: %v", mnt, err)
		}
		if b, err := os.ReadFile(filepath.Join(mnt, "var/opaque/kept")); err != nil || string(b) != "kept\n" {
			t.Fatalf("read of a good file in %s: %q %v", mnt, b, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(mounts["good"], "bin/busybox")); err != nil || len(b) != 300_000 {
		t.Fatalf("good mount: %d bytes, %v", len(b), err)
	}
}

// TestRecoverOp: a panic in a handler becomes EIO for that call.
func TestRecoverOp(t *testing.T) {
	f := &fileNode{entry: Entry{Path: "p", Size: 10, Data: panicData{}}, timeout: time.Second}
	_, errno := f.Read(context.Background(), nil, make([]byte, 4), 0)
	if errno != syscall.EIO {
		t.Fatalf("errno = %v, want EIO", errno)
	}
}

type panicData struct{}

func (panicData) ReadAt(ctx context.Context, p []byte, off int64) (int, error) { panic("boom") }
func (panicData) Progress() (int64, int64)                                     { return 0, 0 }
func (panicData) PassthroughPath() string                                      { return "" }

// FuzzStargzTOC mutates one field of one entry of a real layer's TOC (or
// inserts, removes, renames entries) and opens and reads the result: no
// input may panic, hang or allocate without bound.
func FuzzStargzTOC(f *testing.F) {
	blob, _ := buildLayer(f, buildTar(f, layerCorpus()), estargz.WithChunkSize(65536), estargz.WithMinChunkSize(4096))
	f.Add(3, uint8(0), int64(1<<40), "")
	f.Add(3, uint8(0), int64(-1), "")
	f.Add(4, uint8(1), int64(1<<40), "")
	f.Add(4, uint8(4), int64(1<<40), "")
	f.Add(2, uint8(2), int64(1<<62), "")
	f.Add(5, uint8(5), int64(0), "../x")
	f.Add(6, uint8(6), int64(0), "bin/busybox")
	f.Add(7, uint8(7), int64(0), "hardlink")
	f.Add(8, uint8(9), int64(0), "")
	f.Add(9, uint8(10), int64(0), "")
	f.Add(10, uint8(11), int64(100), "user.x")
	f.Fuzz(func(t *testing.T, entry int, field uint8, value int64, str string) {
		exercise(craftedBlob(t, blob, tocMutation{entry: entry, field: field, value: value, str: str}))
	})
}
