package testenv

import (
	"bytes"
	"errors"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProgramTB(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	tb, closeFn := NewProgramTB(root)
	var out bytes.Buffer
	tb.Logger = log.New(&out, "", 0)

	var order []int
	tb.Cleanup(func() { order = append(order, 1) })
	dir := tb.TempDir()
	if !strings.HasPrefix(dir, root) {
		t.Fatalf("TempDir %q not under %q", dir, root)
	}
	tb.Cleanup(func() {
		order = append(order, 2)
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("TempDir removed before later cleanups: %v", err)
		}
		tb.Cleanup(func() { order = append(order, 4) }) // registered while closing
	})
	tb.Cleanup(func() { order = append(order, 3); panic("boom") })
	tb.Logf("hello %d", 1)
	if tb.Failed() {
		t.Fatal("Failed before Fatalf")
	}

	func() {
		defer func() {
			var fe FatalError
			if r := recover(); r == nil || !errors.As(r.(error), &fe) || fe.Msg != "bad 7" {
				t.Errorf("recovered %v", r)
			}
		}()
		tb.Fatalf("bad %d", 7)
	}()
	if !tb.Failed() {
		t.Error("not Failed after Fatalf")
	}
	closeFn()
	closeFn()
	if want := []int{3, 2, 4, 1}; len(order) != 4 || order[0] != 3 || order[1] != 2 || order[2] != 4 || order[3] != 1 {
		t.Errorf("cleanup order %v, want %v", order, want)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("TempDir not removed: %v", err)
	}
	for _, s := range []string{"hello 1", "FATAL: bad 7", "cleanup panicked: boom"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("log lacks %q: %q", s, out.String())
		}
	}
}

// TestProgramTBDrivesComponents runs an Origin and a process under a
// ProgramTB, as the benchmark CLI does, and checks Close tears them down.
func TestProgramTBDrivesComponents(t *testing.T) {
	tb, closeFn := NewProgramTB(t.TempDir())
	tb.Logger = log.New(&bytes.Buffer{}, "", 0)
	o := NewOrigin(tb)
	o.AddRandom("f", 1000, 1)
	WaitHTTP(tb, o.URL("f"), 5*1e9)
	p := Start(tb, "", "/bin/sh", "-c", "sleep 30")
	closeFn()
	if !p.Exited() {
		t.Error("process survived Close")
	}
	if resp, err := http.Get(o.URL("f")); err == nil {
		resp.Body.Close()
		t.Error("origin survived Close")
	}
}
