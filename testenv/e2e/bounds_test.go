//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/wire"
)

// procFDs counts the open file descriptors of process pid (-1 if unknown)
// and how many of them are sockets.
func procFDs(pid int) (all, sockets int) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1, 0
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			sockets++
		}
	}
	return len(ents), sockets
}

// TestBoundsManyRegistrations (issue 14): 10,000 registrations of distinct
// URLs from 64 concurrent clients, then a legitimate dfget: the dfget
// succeeds and the supernode's open files stay under supernode.FDBound for
// its --max-open-tasks and the connections in use, throughout.
func TestBoundsManyRegistrations(t *testing.T) {
	const (
		files    = 10_000
		clients  = 64
		maxOpen  = 256
		fileSize = 2048
	)
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	for i := 0; i < files; i++ {
		origin.AddRandom(fmt.Sprintf("small/%d", i), fileSize, int64(i))
	}
	want := origin.AddRandom("big.bin", 3*MiB, 99)
	sn := testenv.StartSupernode(t, bin, append(testenv.AllowOrigins(origin.Addr()),
		"--log-level", "info", "--register-rate", "-1", "--max-open-tasks", fmt.Sprint(maxOpen))...)
	pid := sn.Proc.Pid()
	// Each client holds a connection to the supernode, and each of the
	// seed's fills in flight one to the origin.
	bound := supernode.FDBound(maxOpen, 2*clients)

	var peak, peakSockets atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			n, socks := procFDs(pid)
			if int64(n) > peak.Load() {
				peak.Store(int64(n))
				peakSockets.Store(int64(socks))
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	var next, failed, shed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 60 * time.Second}
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= files {
					return
				}
				body, _ := json.Marshal(wire.RegisterRequest{PeerID: fmt.Sprintf("flood-%d", c),
					URL: origin.URL(fmt.Sprintf("small/%d", i))})
				var err error
				for {
					var resp *http.Response
					resp, err = hc.Post("http://"+sn.Addr+"/api/v1/tasks/register", "application/json", bytes.NewReader(body))
					if err != nil {
						break
					}
					resp.Body.Close()
					if resp.StatusCode == http.StatusTooManyRequests {
						// The seed sheds load while all its open tasks are busy.
						shed.Add(1)
						time.Sleep(100 * time.Millisecond)
						continue
					}
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
					break
				}
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { t.Logf("registration %d: %v", i, err) })
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("open files of the supernode after the registrations, by kind: %v", fdKinds(pid))
	t.Logf("%d registrations in %v (%.0f/s), %d failed, %d answers 429 (retried); peak open files %d (%d sockets; bound %d)",
		files, took.Round(time.Millisecond), files/took.Seconds(), failed.Load(), shed.Load(), peak.Load(), peakSockets.Load(), bound)
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d registrations failed", n, files)
	}

	out := filepath.Join(t.TempDir(), "big.bin")
	p := testenv.Dfget(t, bin, sn.Addr, origin.URL("big.bin"), out)
	waitOK(t, p, 60*time.Second)
	assertSHA(t, out, want)

	close(stop)
	<-sampled
	if n, _ := procFDs(pid); n > int(peak.Load()) {
		peak.Store(int64(n))
	}
	if peak.Load() > int64(bound) {
		t.Errorf("supernode peaked at %d open files, documented bound %d", peak.Load(), bound)
	}
	if peak.Load() <= 0 {
		t.Errorf("could not count the supernode's open files")
	}
}

// fdKinds counts the open files of pid by kind (socket, pipe, or the
// base name of a file).
func fdKinds(pid int) map[string]int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	out := map[string]int{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		k := filepath.Base(l)
		if i := strings.IndexByte(l, ':'); i > 0 && !strings.HasPrefix(l, "/") {
			k = l[:i]
		}
		out[k]++
	}
	return out
}
