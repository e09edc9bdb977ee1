//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
)

const readScript = "#!/bin/sh\nhead -c 1048576 /data/big | sha256sum\n"

// host is one simulated host: a df-snapshotter (embedded peer) and a
// private containerd using it as a proxy plugin.
type host struct {
	c        *testenv.Containerd
	ssock    string
	snap     *testenv.Proc
	snapArgs []string
}

func startHost(t *testing.T, bin, supernode string, extra ...string) *host {
	t.Helper()
	dir, err := os.MkdirTemp("", "dfsn") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Runs after the processes are killed: detach the FUSE layers.
		for _, m := range mountsUnder(dir) {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
		os.RemoveAll(dir)
	})
	h := &host{ssock: filepath.Join(dir, "s.sock")}
	h.snapArgs = append([]string{"--root", filepath.Join(dir, "snap"), "--address", h.ssock, "--supernode", supernode,
		"--no-daemon", "--upload-listen", "127.0.0.1:0", "--log-level", "debug"}, extra...)
	h.startSnapshotter(t, bin)
	h.c = testenv.StartContainerd(t, testenv.ContainerdOptions{ExtraConfig: fmt.Sprintf(`
[proxy_plugins]
  [proxy_plugins.damselfly]
    type = "snapshot"
    address = %q
`, h.ssock)})
	return h
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func (h *host) startSnapshotter(t *testing.T, bin string) {
	t.Helper()
	h.snap = testenv.Start(t, bin, "df-snapshotter", h.snapArgs...)
	waitSock(t, h.ssock, h.snap)
}

func waitSock(t *testing.T, sock string, p *testenv.Proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		if p.Exited() {
			t.Fatalf("%s exited:\n%s", p.Name, p.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: no socket at %s:\n%s", p.Name, sock, p.Tail(30))
}

// ctr runs ctr against the host's containerd and returns its output.
func (h *host) ctr(t *testing.T, args ...string) string {
	t.Helper()
	out, err := h.c.Ctr(5*time.Minute, args...)
	if err != nil {
		t.Fatalf("%v\n%s\nsnapshotter log:\n%s", err, out, h.snap.Tail(30))
	}
	return out
}

// waitReconnect waits until containerd's connection to the snapshotter
// (in gRPC reconnect backoff after a restart) works again.
func (h *host) waitReconnect(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := h.c.Ctr(10*time.Second, "snapshots", "--snapshotter", "damselfly", "ls")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not reconnect to df-snapshotter: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (h *host) pull(t *testing.T, bin, ref string) time.Duration {
	t.Helper()
	start := time.Now()
	p := testenv.Start(t, bin, "dfctl", "image", "pull", "--address", h.c.Sock, "--namespace", h.c.Namespace,
		"--snapshotter", "damselfly", "--plain-http", ref)
	code, err := p.Wait(5 * time.Minute)
	if err != nil || code != 0 {
		t.Fatalf("dfctl image pull: %d %v\n%s\nsnapshotter:\n%s", code, err, p.Tail(30), h.snap.Tail(30))
	}
	return time.Since(start)
}

func firstMiBSHA(size, seed int64) string {
	h := sha256.New()
	io.CopyN(h, testenv.RandomReader(size, seed), 1<<20)
	return hex.EncodeToString(h.Sum(nil))
}

// appImage builds busybox + a 256 MiB random file + the read script, and
// pushes it as plain and as eStargz.
func appImage(t *testing.T, bin string, reg *testenv.Registry) (plain, esgz string, im *testenv.Image) {
	t.Helper()
	im = testenv.BuildImage(t, testenv.ImageOptions{Files: []testenv.ImageFile{
		{Path: "/data/big", Random: 256 << 20, Seed: 31},
		{Path: "/read.sh", Data: []byte(readScript)},
	}})
	plain = reg.Addr + "/test/app:plain"
	esgz = reg.Addr + "/test/app:esgz"
	im.Push(t, plain)
	p := testenv.Start(t, bin, "dfctl", "image", "convert", "--compression-level", "1",
		"--prioritized-files", "/bin/busybox,/read.sh", plain, esgz)
	if code, err := p.Wait(5 * time.Minute); err != nil || code != 0 {
		t.Fatalf("dfctl image convert: %d %v\n%s", code, err, p.Tail(30))
	}
	return plain, esgz, im
}

// TestSnapshotterLazyStart: a converted image runs before its 256 MiB layer
// is downloaded, reading 1 MiB of it; its rootfs equals the overlayfs one of
// the original image; a non-eStargz image still runs; after a restart of
// df-snapshotter, containers start again from the restored layers.
func TestSnapshotterLazyStart(t *testing.T) {
	bin := bins(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	plain, esgz, im := appImage(t, bin, reg)
	want := firstMiBSHA(256<<20, 31)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(reg.Addr)...)
	h := startHost(t, bin, sn.Addr, "--background-fetch=false")

	reg.ResetCounters()
	took := h.pull(t, bin, esgz)
	out := h.ctr(t, "run", "--rm", "--snapshotter", "damselfly", esgz, "lazy1", "sh", "/read.sh")
	if !strings.Contains(out, want) {
		t.Fatalf("script printed %q, want %s", out, want)
	}
	egress := reg.BlobBytes()
	t.Logf("lazy pull+run: pull %s; registry sent %d blob bytes of a %d-byte image (%.1f%%)",
		took.Round(time.Millisecond), egress, im.BlobBytes(), 100*float64(egress)/float64(im.BlobBytes()))
	if egress > im.BlobBytes()/10 {
		t.Errorf("registry sent %d bytes; want a small fraction of %d", egress, im.BlobBytes())
	}
	if !strings.Contains(h.snap.Log(), "layer mounted lazily") {
		t.Fatal("no layer was mounted lazily")
	}

	// The whole rootfs, lazy vs the original image on overlayfs.
	list := []string{"/bin/busybox", "sh", "-c",
		"cd / && /bin/busybox find . -xdev ! -path ./proc ! -path ./sys ! -path ./dev ! -path ./run ! -path ./etc | /bin/busybox sort | while read f; do " +
			"if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then s=$(/bin/busybox sha256sum \"$f\" | cut -c1-64); else s=-; fi; " +
			"echo \"$f $(/bin/busybox stat -c '%a %F %u:%g' \"$f\") $(/bin/busybox readlink \"$f\") $s\"; done"}
	lazyTree := h.ctr(t, append([]string{"run", "--rm", "--snapshotter", "damselfly", esgz, "tree1"}, list...)...)
	h.ctr(t, "images", "pull", "--plain-http", plain)
	fullTree := h.ctr(t, append([]string{"run", "--rm", plain, "tree2"}, list...)...)
	if strings.TrimSpace(fullTree) == "" {
		t.Fatalf("empty listing from the overlayfs container; ls:\n%s", h.ctr(t, "run", "--rm", plain, "dbg", "/bin/busybox", "ls", "-la", "/"))
	}
	if lazyTree != fullTree {
		t.Fatalf("rootfs differs between lazy eStargz and overlayfs:\nlazy:\n%s\nfull:\n%s", lazyTree, fullTree)
	}
	if !strings.Contains(lazyTree, "./data/big") {
		t.Fatalf("tree listing misses the big file:\n%s", lazyTree)
	}

	// A non-eStargz image through the same snapshotter (fallback).
	h.pull(t, bin, plain)
	out = h.ctr(t, "run", "--rm", "--snapshotter", "damselfly", plain, "fallback", "sh", "/read.sh")
	if !strings.Contains(out, want) {
		t.Fatalf("fallback run printed %q", out)
	}

	// Restart df-snapshotter (kill -9): layers are restored and run again.
	h.snap.Kill9()
	h.startSnapshotter(t, bin)
	h.waitReconnect(t)
	out = h.ctr(t, "run", "--rm", "--snapshotter", "damselfly", esgz, "again", "sh", "/read.sh")
	if !strings.Contains(out, want) {
		t.Fatalf("after restart the script printed %q", out)
	}
}

// TestSnapshotterTwoHosts: two hosts start the same lazy image; registry
// egress for both together is about one copy of what was read.
func TestSnapshotterTwoHosts(t *testing.T) {
	bin := bins(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	_, esgz, _ := appImage(t, bin, reg)
	want := firstMiBSHA(256<<20, 31)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(reg.Addr)...)
	a := startHost(t, bin, sn.Addr, "--background-fetch=false")
	b := startHost(t, bin, sn.Addr, "--background-fetch=false")

	reg.ResetCounters()
	a.pull(t, bin, esgz)
	if out := a.ctr(t, "run", "--rm", "--snapshotter", "damselfly", esgz, "a1", "sh", "/read.sh"); !strings.Contains(out, want) {
		t.Fatalf("host A printed %q", out)
	}
	one := reg.BlobBytes()
	b.pull(t, bin, esgz)
	if out := b.ctr(t, "run", "--rm", "--snapshotter", "damselfly", esgz, "b1", "sh", "/read.sh"); !strings.Contains(out, want) {
		t.Fatalf("host B printed %q", out)
	}
	both := reg.BlobBytes()
	t.Logf("registry blob egress: %d bytes for host A, %d for both hosts", one, both)
	if both > one+one/4+(1<<20) {
		t.Errorf("two hosts cost the registry %d bytes, one host %d: want about one copy", both, one)
	}
}

// TestSnapshotterOffline: with the registry and the supernode gone after a
// lazy start, a read of a missing chunk fails with an I/O error within the
// read timeout, and containerd's calls keep answering.
func TestSnapshotterOffline(t *testing.T) {
	bin := bins(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	_, esgz, _ := appImage(t, bin, reg)
	want := firstMiBSHA(256<<20, 31)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(reg.Addr)...)
	h := startHost(t, bin, sn.Addr, "--background-fetch=false", "--read-timeout", "3s")
	h.pull(t, bin, esgz)
	if out := h.ctr(t, "run", "--rm", "--snapshotter", "damselfly", esgz, "on1", "sh", "/read.sh"); !strings.Contains(out, want) {
		t.Fatalf("online run printed %q", out)
	}
	reg.Proc.Kill9()
	sn.Proc.Kill9()
	// What was read before still reads.
	if out := h.ctr(t, "run", "--rm", "--snapshotter", "damselfly", esgz, "off1", "sh", "/read.sh"); !strings.Contains(out, want) {
		t.Fatalf("offline re-read of present chunks printed %q", out)
	}
	// A read of chunks nobody has fails, in bounded time.
	start := time.Now()
	out, err := h.c.Ctr(2*time.Minute, "run", "--rm", "--snapshotter", "damselfly", esgz, "off2",
		"sh", "-c", "tail -c 1048576 /data/big | sha256sum; echo status=$?")
	took := time.Since(start)
	t.Logf("offline read of a missing chunk: %v after %s: %s", err, took.Round(time.Millisecond), strings.TrimSpace(out))
	if err == nil && !strings.Contains(out, "I/O error") && !strings.Contains(out, "Input/output error") {
		t.Fatalf("read of a missing chunk offline did not fail: %q", out)
	}
	if took > 90*time.Second {
		t.Fatalf("failing read took %s with --read-timeout 3s", took)
	}
	// containerd still answers, including about the snapshotter.
	if _, err := h.c.Ctr(30*time.Second, "snapshots", "--snapshotter", "damselfly", "ls"); err != nil {
		t.Fatalf("containerd stopped answering: %v", err)
	}
}
