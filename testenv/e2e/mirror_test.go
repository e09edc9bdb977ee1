//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/proxy"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// mirrorDaemon is a dfdaemon whose registry mirror listens on Mirror.
type mirrorDaemon struct {
	*testenv.Daemon
	Mirror string // host:port
}

// startMirrorDaemon starts a dfdaemon whose mirror's default upstream is
// the registry at regAddr.
func startMirrorDaemon(t *testing.T, bin, snAddr, regAddr string, extra ...string) *mirrorDaemon {
	t.Helper()
	mirror := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	args := append([]string{"--proxy-listen", mirror, "--registry", "http://" + regAddr}, extra...)
	d := testenv.StartDaemon(t, bin, snAddr, args...)
	testenv.WaitHTTP(t, "http://"+mirror+proxy.HealthPath, 10*time.Second)
	return &mirrorDaemon{Daemon: d, Mirror: mirror}
}

func (d *mirrorDaemon) stats(t *testing.T) proxy.Stats {
	t.Helper()
	var st proxy.Stats
	if err := json.Unmarshal(mustGet(t, "http://"+d.Mirror+proxy.StatsPath), &st); err != nil {
		t.Fatalf("mirror stats: %v", err)
	}
	return st
}

// buildTestImage builds busybox plus one layer holding a random file of
// size bytes at /data/big.bin, and pushes it to reg as test/app:v1.
func buildTestImage(t *testing.T, reg *testenv.Registry, size int64, seed int64) (*testenv.Image, string) {
	t.Helper()
	start := time.Now()
	img := testenv.BuildImage(t, testenv.ImageOptions{Tag: "v1",
		Files: []testenv.ImageFile{{Path: "/data/big.bin", Random: size, Seed: seed}}})
	ref := reg.Addr + "/test/app:v1"
	img.Push(t, ref)
	t.Logf("image %s: %d blobs, %.1f MiB, built and pushed in %v", ref, len(img.Blobs()),
		float64(img.BlobBytes())/MiB, time.Since(start).Round(time.Millisecond))
	return img, ref
}

// waitSeeded waits until the supernode holds every blob of img.
func waitSeeded(t *testing.T, sn *testenv.Supernode, img *testenv.Image, timeout time.Duration) map[string]testenv.TaskStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := sn.Status(t)
		got := map[string]testenv.TaskStatus{}
		for _, task := range st.Tasks {
			got[task.TaskID] = task
		}
		done := 0
		for _, b := range img.Blobs() {
			if task, ok := got[manifest.DigestTaskID(digest.Digest(b.Digest))]; ok && task.State == "done" {
				done++
			}
		}
		if done == len(img.Blobs()) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("supernode holds %d of %d blobs after %v; tasks: %+v", done, len(img.Blobs()), timeout, st.Tasks)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkRun runs the image and checks the big file's sha256 inside it.
func checkRun(t *testing.T, ctd *testenv.Containerd, ref, id string, img *testenv.Image) {
	t.Helper()
	out := ctd.Run(t, ref, id, "sha256sum", "/data/big.bin")
	if want := img.FileSHA256["/data/big.bin"]; !strings.Contains(out, want) {
		t.Fatalf("container %s: sha256sum printed %q, want %s", id, strings.TrimSpace(out), want)
	}
}

// TestMirrorContainerdPullRun: containerd pulls through one dfdaemon's
// mirror (hosts.toml) and runs the image; every blob went through the P2P
// engine with its digest checked, and the registry sent each blob once.
func TestMirrorContainerdPullRun(t *testing.T) {
	bin := bins(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(reg.Addr)...)
	img, ref := buildTestImage(t, reg, 64*MiB, 11)
	d := startMirrorDaemon(t, bin, sn.Addr, reg.Addr)
	ctd := testenv.StartContainerd(t, testenv.ContainerdOptions{})
	hosts := testenv.MirrorHostsDir(t, reg.Addr, d.Mirror)
	reg.ResetCounters()

	start := time.Now()
	ctd.Pull(t, ref, hosts)
	pull := time.Since(start)
	checkRun(t, ctd, ref, "mirror-run", img)

	st := d.stats(t)
	nBlobs := int64(len(img.Blobs()))
	t.Logf("pull took %v; mirror stats %+v; registry: %d blob GETs, %d blob bytes, %d manifest GETs (image blobs %d bytes)",
		pull.Round(time.Millisecond), st, reg.BlobGets(), reg.BlobBytes(), reg.ManifestGets(), img.BlobBytes())
	if st.P2PRequests < nBlobs || st.Verified < nBlobs || st.DigestMismatches != 0 || st.Fallbacks != 0 {
		t.Errorf("mirror stats %+v: want every one of %d blobs through P2P, verified", st, nBlobs)
	}
	if st.P2PBytes < img.BlobBytes() {
		t.Errorf("mirror sent %d P2P bytes, want >= %d", st.P2PBytes, img.BlobBytes())
	}
	if st.Passthrough == 0 {
		t.Error("no request passed through (manifests should)")
	}
	tasks := waitSeeded(t, sn, img, 10*time.Second)
	for _, b := range img.Blobs() {
		task := tasks[manifest.DigestTaskID(digest.Digest(b.Digest))]
		if task.BytesFromOrigin < b.Size || task.BytesFromOrigin > b.Size+dupSlack(b.Size) || task.Peers < 1 {
			t.Errorf("blob %s: supernode task %+v, want ~%d bytes from the registry and the daemon as a peer", b.Digest[:19], task, b.Size)
		}
	}
	if got, want := reg.BlobBytes(), img.BlobBytes(); got > want+imageSlack(img) {
		t.Errorf("registry sent %d blob bytes, want about one copy (%d)", got, want)
	}
}

// dupSlack is the duplicate origin bytes the seed may fetch for a blob of
// size n: its on-demand fetch of a piece a reader waits for can race the
// background fill of the same piece (a few pieces at most).
func dupSlack(n int64) int64 { return 4 * pieceSize(n) }

func imageSlack(img *testenv.Image) int64 {
	var s int64
	for _, b := range img.Blobs() {
		s += dupSlack(b.Size)
	}
	return s
}

// TestMirrorThreeDaemons: three hosts (a dfdaemon and a containerd each)
// pull the same image at once; the registry sends about one copy.
func TestMirrorThreeDaemons(t *testing.T) {
	bin := bins(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(reg.Addr)...)
	img, ref := buildTestImage(t, reg, 96*MiB, 12)
	type host struct {
		d     *mirrorDaemon
		ctd   *testenv.Containerd
		hosts string
	}
	var hs []host
	for i := 0; i < 3; i++ {
		d := startMirrorDaemon(t, bin, sn.Addr, reg.Addr)
		hs = append(hs, host{d: d, ctd: testenv.StartContainerd(t, testenv.ContainerdOptions{}),
			hosts: testenv.MirrorHostsDir(t, reg.Addr, d.Mirror)})
	}
	reg.ResetCounters()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(hs))
	took := make([]time.Duration, len(hs))
	for i, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := h.ctd.Ctr(5*time.Minute, "image", "pull", "--plain-http", "--hosts-dir", h.hosts, ref)
			took[i] = time.Since(start)
			if err != nil {
				errs[i] = fmt.Errorf("host %d: %v\n%s", i, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range hs {
		checkRun(t, h.ctd, ref, fmt.Sprintf("host%d", i), img)
	}
	var p2pBytes int64
	for i, h := range hs {
		st := h.d.stats(t)
		p2pBytes += st.P2PBytes
		if st.Verified < int64(len(img.Blobs())) || st.DigestMismatches != 0 || st.Fallbacks != 0 {
			t.Errorf("host %d: mirror stats %+v", i, st)
		}
	}
	tasks := waitSeeded(t, sn, img, 10*time.Second)
	var seedServed int64
	for _, b := range img.Blobs() {
		seedServed += tasks[manifest.DigestTaskID(digest.Digest(b.Digest))].BytesServed
	}
	egress, one := reg.BlobBytes(), img.BlobBytes()
	t.Logf("3 pulls took %v / %v / %v; registry blob egress %d bytes for a %d-byte image (%.3f copies, %d blob GETs); "+
		"clients got %d bytes through P2P; the seed served %d bytes to peers (%.2f copies), the rest went peer to peer",
		took[0].Round(time.Millisecond), took[1].Round(time.Millisecond), took[2].Round(time.Millisecond),
		egress, one, float64(egress)/float64(one), reg.BlobGets(), p2pBytes, seedServed, float64(seedServed)/float64(one))
	if egress > one+imageSlack(img) {
		t.Errorf("registry blob egress %d bytes, want about one copy of the image (%d)", egress, one)
	}
}

// TestMirrorPreheatOnPush: the registry's push notifications make the
// supernode preheat every blob; the first pull through the mirror then
// sends no blob request to the registry.
func TestMirrorPreheatOnPush(t *testing.T) {
	bin := bins(t)
	front := testenv.ListenLoopback(t)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(front.Addr().String())...)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Front: front, Notify: sn.URL("/api/v1/registry/notifications")})
	img, ref := buildTestImage(t, reg, 48*MiB, 13)
	start := time.Now()
	tasks := waitSeeded(t, sn, img, time.Minute)
	t.Logf("all %d blobs in the supernode cache %v after the push finished", len(img.Blobs()), time.Since(start).Round(time.Millisecond))
	for _, b := range img.Blobs() {
		if task := tasks[manifest.DigestTaskID(digest.Digest(b.Digest))]; task.Peers != 0 {
			t.Errorf("blob %s already has peers before any pull: %+v", b.Digest[:19], task)
		}
	}
	var pre []struct {
		State, Trigger string
	}
	json.Unmarshal(mustGet(t, sn.URL("/api/v1/preheats")), &pre)
	if len(pre) == 0 || pre[0].Trigger != "registry" {
		t.Errorf("preheats %+v: want ones triggered by the registry", pre)
	}

	d := startMirrorDaemon(t, bin, sn.Addr, reg.Addr)
	ctd := testenv.StartContainerd(t, testenv.ContainerdOptions{})
	hosts := testenv.MirrorHostsDir(t, reg.Addr, d.Mirror)
	reg.ResetCounters()
	ctd.Pull(t, ref, hosts)
	checkRun(t, ctd, ref, "preheated", img)
	t.Logf("first pull: registry saw %v", reg.Requests())
	if reg.BlobGets() != 0 || reg.BlobHeads() != 0 {
		t.Errorf("the first pull sent %d blob GETs and %d blob HEADs to the registry, want none: %v",
			reg.BlobGets(), reg.BlobHeads(), reg.Requests())
	}
	if st := d.stats(t); st.Verified < int64(len(img.Blobs())) {
		t.Errorf("mirror stats %+v", st)
	}
}

// TestMirrorDfctlPreheat: `dfctl preheat IMAGE --wait` warms the image;
// blobs fetched through the mirror afterwards cost the registry nothing.
func TestMirrorDfctlPreheat(t *testing.T) {
	bin := bins(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(reg.Addr)...)
	img, ref := buildTestImage(t, reg, 16*MiB, 14)
	p := testenv.Start(t, bin, "dfctl", "preheat", ref, "--supernode", sn.Addr, "--wait")
	if code, err := p.Wait(2 * time.Minute); code != 0 || err != nil {
		t.Fatalf("dfctl preheat: exit %d %v\n%s", code, err, p.Log())
	}
	if !strings.Contains(p.Log(), "done: 3 blob(s)") {
		t.Errorf("dfctl output:\n%s", p.Log())
	}
	waitSeeded(t, sn, img, 5*time.Second)

	bad := testenv.Start(t, bin, "dfctl", "preheat", reg.Addr+"/test/missing:v1", "--supernode", sn.Addr, "--wait")
	if code, _ := bad.Wait(time.Minute); code == 0 || !strings.Contains(bad.Log(), "404") {
		t.Errorf("dfctl preheat of a missing image: exit %d\n%s", code, bad.Log())
	}
	status := testenv.Start(t, bin, "dfctl", "status", "--supernode", sn.Addr)
	if code, _ := status.Wait(30 * time.Second); code != 0 || !strings.Contains(status.Log(), "success") {
		t.Errorf("dfctl status: exit %d\n%s", code, status.Log())
	}

	d := startMirrorDaemon(t, bin, sn.Addr, reg.Addr)
	reg.ResetCounters()
	for _, b := range img.Blobs() {
		body := mustGet(t, "http://"+d.Mirror+"/v2/test/app/blobs/"+b.Digest)
		if digest.FromBytes(body).String() != b.Digest {
			t.Errorf("blob %s: wrong content through the mirror", b.Digest[:19])
		}
	}
	if reg.BlobGets() != 0 {
		t.Errorf("%d blob GETs reached the registry after the preheat: %v", reg.BlobGets(), reg.Requests())
	}
}

// TestMirrorRangeRequests fetches parts of a layer through the mirror.
func TestMirrorRangeRequests(t *testing.T) {
	bin := bins(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(reg.Addr)...)
	img, _ := buildTestImage(t, reg, 6*MiB, 15)
	d := startMirrorDaemon(t, bin, sn.Addr, reg.Addr)
	layer := img.Layers[len(img.Layers)-1]
	data, err := os.ReadFile(filepath.Join(img.Layout, "blobs", "sha256", strings.TrimPrefix(layer.Digest, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(data))
	url := "http://" + d.Mirror + "/v2/test/app/blobs/" + layer.Digest
	tests := []struct {
		rng        string
		wantStatus int
		want       []byte
		wantCR     string
	}{
		{"bytes=0-99", 206, data[:100], fmt.Sprintf("bytes 0-99/%d", size)},
		{"bytes=100-", 206, data[100:], fmt.Sprintf("bytes 100-%d/%d", size-1, size)},
		{"bytes=-100", 206, data[size-100:], fmt.Sprintf("bytes %d-%d/%d", size-100, size-1, size)},
		{"", 200, data, ""},
		{fmt.Sprintf("bytes=%d-", size), 416, nil, fmt.Sprintf("bytes */%d", size)},
	}
	for _, tc := range tests {
		t.Run(tc.rng, func(t *testing.T) {
			req, _ := http.NewRequest("GET", url, nil)
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus || resp.Header.Get("Content-Range") != tc.wantCR {
				t.Fatalf("status %d Content-Range %q, want %d %q", resp.StatusCode, resp.Header.Get("Content-Range"), tc.wantStatus, tc.wantCR)
			}
			if tc.want != nil && !bytes.Equal(body, tc.want) {
				t.Errorf("%d bytes differ from the layer's", len(body))
			}
			if resp.Header.Get("X-Damselfly-Task") == "" {
				t.Error("not served through P2P")
			}
		})
	}
	if got := reg.BlobBytes(); got > size+dupSlack(size) {
		t.Errorf("registry sent %d blob bytes for a %d-byte layer", got, size)
	}
}

// TestMirrorForwardProxy uses dfdaemon as curl's HTTP proxy (curl -x):
// files matching a --proxy-rule go P2P, others straight to the origin.
func TestMirrorForwardProxy(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl not installed: %v", err)
	}
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	want := origin.AddRandom("p2p/big.bin", 20*MiB, 21)
	wantDirect := origin.AddRandom("other/small.bin", MiB, 22)
	mirror := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	testenv.StartDaemon(t, bin, sn.Addr, "--forward-proxy", "--proxy-listen", mirror, "--proxy-rule", "direct:/files/p2p/skip", "--proxy-rule", "/files/p2p/")
	testenv.WaitHTTP(t, "http://"+mirror+proxy.HealthPath, 10*time.Second)
	out := t.TempDir()
	for _, tc := range []struct {
		name, sum string
		p2p       bool
	}{{"p2p/big.bin", want, true}, {"other/small.bin", wantDirect, false}} {
		file := filepath.Join(out, filepath.Base(tc.name))
		cmd := exec.Command(curl, "-sS", "-f", "-D", file+".headers", "-x", "http://"+mirror, "-o", file, origin.URL(tc.name))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("curl -x %s: %v\n%s", tc.name, err, b)
		}
		assertSHA(t, file, tc.sum)
		headers, _ := os.ReadFile(file + ".headers")
		if got := strings.Contains(strings.ToLower(string(headers)), "x-damselfly-task"); got != tc.p2p {
			t.Errorf("%s: served through P2P %v, want %v\n%s", tc.name, got, tc.p2p, headers)
		}
	}
	if st := sn.Status(t); st.Task(origin.URL("p2p/big.bin")) == nil {
		t.Error("the supernode has no task for the P2P file")
	}
}
