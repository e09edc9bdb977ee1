package p2p_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// flipStored inverts one byte of piece i of the stored task behind the
// store's back, dated a second ahead (independent of timestamp
// granularity).
func flipStored(t *testing.T, p *p2p.Peer, taskID string, i int) {
	t.Helper()
	tk, release, ok := p.Lookup(taskID)
	if !ok {
		t.Fatalf("task %s not held", taskID)
	}
	off, _ := tk.Layout().PieceRange(i)
	path := tk.DataPath()
	release()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, off+10)
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off+10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	later := time.Now().Add(time.Second)
	os.Chtimes(path, later, later)
}

// A byte flipped in a stored piece never reaches an output: the next
// download of the URL drops the rotten piece, fetches it again and writes
// the right bytes.
func TestRottenStoreIsRepaired(t *testing.T) {
	origin := testenv.NewOrigin(t)
	const size = 9<<20 + 321
	sha := origin.AddRandom("f", size, 11)
	tests := []struct {
		name       string
		supernodes func(t *testing.T) []string
	}{
		{"through a supernode", func(t *testing.T) []string { return []string{startSupernode(t)} }},
		{"no supernode", func(t *testing.T) []string { return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPeer(t, tc.supernodes(t)...)
			dir := t.TempDir()
			if _, err := download(t, p, p2p.Request{URL: origin.URL("f"), Output: filepath.Join(dir, "first")}); err != nil {
				t.Fatal(err)
			}
			id, err := manifest.TaskID(origin.URL("f"), "", nil)
			if err != nil {
				t.Fatal(err)
			}
			flipStored(t, p, id, 1)
			before := origin.BytesServed("f")
			out := filepath.Join(dir, "second")
			if _, err := download(t, p, p2p.Request{URL: origin.URL("f"), Output: out}); err != nil {
				t.Fatalf("download after the flip: %v", err)
			}
			if got := fileSHA256(t, out); got != sha {
				t.Fatalf("output sha256 %s, want %s: rotten bytes reached the output", got, sha)
			}
			if origin.BytesServed("f") == before {
				t.Error("the rotten piece was not fetched again")
			}
		})
	}
}
