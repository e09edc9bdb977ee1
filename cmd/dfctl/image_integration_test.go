//go:build e2e && linux

package main

// End-to-end tests of "dfctl image convert" and "dfctl image pull" against
// Debian's docker-registry (distribution 2.8) and containerd, with a
// busybox image built by umoci and pushed by skopeo. Run as root:
//
//	go test -tags e2e ./cmd/dfctl/ -run E2E -v

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/damselfly-p2p/damselfly/manifest/oci"
	"github.com/damselfly-p2p/damselfly/snapshotter/labels"
)

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProc starts a long-running command whose output goes to a log file
// in dir, and stops it (SIGTERM, then SIGKILL) when the test ends.
func startProc(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, filepath.Base(name)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("%s log (tail):\n%s", name, b)
		}
	})
}

// startRegistry runs docker-registry on a free loopback port and returns
// its HOST:PORT.
func startRegistry(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
`, filepath.Join(dir, "storage"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startProc(t, dir, "docker-registry", "serve", cfgPath)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry at %s did not come up: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// pushBusybox builds a two-layer busybox image with umoci (layer 1:
// /bin/busybox, /bin/sh -> busybox, /etc/data.bin and /etc/hello; layer 2:
// /etc/two and a whiteout of /etc/hello) and pushes it as REPO:v1 (Docker
// schema2) and REPO:v1-oci (OCI).
func pushBusybox(t *testing.T, repo string) {
	t.Helper()
	needTools(t, "umoci", "skopeo")
	dir := t.TempDir()
	layout, bundle := filepath.Join(dir, "oci"), filepath.Join(dir, "bundle")
	img := layout + ":v1"
	run(t, "umoci", "init", "--layout", layout)
	run(t, "umoci", "new", "--image", img)
	run(t, "umoci", "unpack", "--image", img, bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("busybox-static not installed: %v", err)
	}
	data := bytes.Repeat([]byte("damselfly "), 800) // a few KB
	must(t, os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755))
	must(t, os.Symlink("busybox", filepath.Join(rootfs, "bin/sh")))
	must(t, os.WriteFile(filepath.Join(rootfs, "etc/data.bin"), data, 0o644))
	must(t, os.WriteFile(filepath.Join(rootfs, "etc/hello"), []byte("hello\n"), 0o644))
	run(t, "umoci", "repack", "--image", img, bundle)
	must(t, os.RemoveAll(bundle))
	run(t, "umoci", "unpack", "--image", img, bundle)
	must(t, os.Remove(filepath.Join(rootfs, "etc/hello")))
	must(t, os.WriteFile(filepath.Join(rootfs, "etc/two"), []byte("two\n"), 0o644))
	run(t, "umoci", "repack", "--image", img, bundle)
	run(t, "umoci", "config", "--image", img, "--config.cmd", "/bin/sh")
	run(t, "skopeo", "copy", "--format", "v2s2", "--dest-tls-verify=false", "oci:"+img, "docker://"+repo+":v1")
	run(t, "skopeo", "copy", "--format", "oci", "--dest-tls-verify=false", "oci:"+img, "docker://"+repo+":v1-oci")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// registryGet GETs /v2/PATH and returns the body and content type.
func registryGet(t *testing.T, host, path, accept string) ([]byte, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/"+path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b, resp.Header.Get("Content-Type")
}

func registryPut(t *testing.T, host, path, mediaType string, body []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+host+"/v2/"+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("PUT %s: %s: %s", path, resp.Status, b)
	}
}

const acceptManifests = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json"

func manifestDigest(t *testing.T, host, repo, tag string) digest.Digest {
	b, _ := registryGet(t, host, repo+"/manifests/"+tag, acceptManifests)
	return digest.FromBytes(b)
}

func runImageCommand(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	cmd := newImageCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	t.Logf("dfctl image %s:\n%s", strings.Join(args, " "), out.String())
	return out.String(), err
}

// checkConverted verifies the eStargz image REPO:TAG through the registry
// API: annotations, TOCs, diff IDs, and that the config is otherwise the
// source's.
func checkConverted(t *testing.T, host, repo, tag, srcTag string) ocispec.Manifest {
	t.Helper()
	mb, ct := registryGet(t, host, repo+"/manifests/"+tag, acceptManifests)
	if ct != oci.MediaTypeOCIManifest {
		t.Errorf("manifest content type %q", ct)
	}
	var m ocispec.Manifest
	must(t, json.Unmarshal(mb, &m))
	if m.MediaType != oci.MediaTypeOCIManifest || m.Config.MediaType != oci.MediaTypeOCIConfig {
		t.Errorf("manifest media types %q / config %q", m.MediaType, m.Config.MediaType)
	}
	cb, _ := registryGet(t, host, repo+"/blobs/"+m.Config.Digest.String(), "")
	if digest.FromBytes(cb) != m.Config.Digest {
		t.Fatal("config digest mismatch")
	}
	var cfg ocispec.Image
	must(t, json.Unmarshal(cb, &cfg))
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) || len(m.Layers) != 2 {
		t.Fatalf("%d layers, %d diff_ids", len(m.Layers), len(cfg.RootFS.DiffIDs))
	}

	// The source image, for comparison.
	smb, _ := registryGet(t, host, repo+"/manifests/"+srcTag, acceptManifests)
	var sm ocispec.Manifest
	must(t, json.Unmarshal(smb, &sm))
	scb, _ := registryGet(t, host, repo+"/blobs/"+sm.Config.Digest.String(), "")
	var scfg ocispec.Image
	must(t, json.Unmarshal(scb, &scfg))
	if cfg.Architecture != scfg.Architecture || cfg.OS != scfg.OS || fmt.Sprint(cfg.Config.Cmd) != "[/bin/sh]" || len(cfg.History) != len(scfg.History) {
		t.Errorf("config changed beyond diff_ids:\nold %s\nnew %s", scb, cb)
	}

	busybox, _ := os.ReadFile("/bin/busybox")
	for i, l := range m.Layers {
		if l.MediaType != oci.MediaTypeOCILayerGzip {
			t.Errorf("layer %d media type %q", i, l.MediaType)
		}
		tocAnn := l.Annotations[estargz.TOCJSONDigestAnnotation]
		if tocAnn == "" {
			t.Fatalf("layer %d has no %s annotation: %v", i, estargz.TOCJSONDigestAnnotation, l.Annotations)
		}
		blob, _ := registryGet(t, host, repo+"/blobs/"+l.Digest.String(), "")
		if digest.FromBytes(blob) != l.Digest || int64(len(blob)) != l.Size {
			t.Fatalf("layer %d: blob does not match its descriptor", i)
		}
		r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
		if err != nil {
			t.Fatalf("layer %d: estargz.Open: %v", i, err)
		}
		if r.TOCDigest().String() != tocAnn {
			t.Errorf("layer %d: TOC digest %s, annotation %s", i, r.TOCDigest(), tocAnn)
		}
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		must(t, err)
		raw, err := io.ReadAll(zr)
		must(t, err)
		if got := digest.FromBytes(raw); got != cfg.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: sha256 of the decompressed layer %s, config diff_id %s", i, got, cfg.RootFS.DiffIDs[i])
		}
		if got := l.Annotations[estargz.StoreUncompressedSizeAnnotation]; got != strconv.Itoa(len(raw)) {
			t.Errorf("layer %d: uncompressed-size annotation %q, real %d", i, got, len(raw))
		}
		if cfg.RootFS.DiffIDs[i] == scfg.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: diff_id unchanged; eStargz content differs from the source's", i)
		}
		switch i {
		case 0:
			if _, ok := r.Lookup(estargz.PrefetchLandmark); !ok {
				t.Error("layer 1 holds prioritized files but has no prefetch landmark")
			}
			e, ok := r.Lookup("bin/busybox")
			if !ok || e.Size != int64(len(busybox)) {
				t.Fatalf("bin/busybox in layer 1: %v %+v", ok, e)
			}
			if e.ChunkSize == 0 || e.ChunkSize > 64<<10 {
				t.Errorf("bin/busybox not chunked by --chunk-size 64K: chunk %d", e.ChunkSize)
			}
			f, err := r.OpenFile("bin/busybox")
			must(t, err)
			got, _ := io.ReadAll(io.NewSectionReader(f, 0, e.Size))
			if !bytes.Equal(got, busybox) {
				t.Error("bin/busybox content differs")
			}
			if sh, ok := r.Lookup("bin/sh"); !ok || sh.LinkName != "busybox" {
				t.Errorf("bin/sh: %v %+v", ok, sh)
			}
		case 1:
			if _, ok := r.Lookup("etc/.wh.hello"); !ok {
				t.Error("layer 2 lost the whiteout of /etc/hello")
			}
			if _, ok := r.Lookup(estargz.NoPrefetchLandmark); !ok {
				if _, ok := r.Lookup(estargz.PrefetchLandmark); !ok {
					t.Error("layer 2 has no landmark")
				}
			}
		}
	}
	return m
}

func TestImageConvertE2E(t *testing.T) {
	needTools(t, "docker-registry")
	host := startRegistry(t)
	repo := host + "/test/busybox"
	pushBusybox(t, repo)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	out, err := runImageCommand(t, ctx, "convert", repo+":v1", repo+":esgz",
		"--prioritized-files", "/bin/sh,/bin/busybox", "--chunk-size", "64K", "--jobs", "2")
	if err != nil {
		t.Fatalf("convert: %v", err)
	}
	if !strings.Contains(out, "pushed "+repo+":esgz@") || strings.Count(out, ": pushed,") != 2 {
		t.Errorf("convert output:\n%s", out)
	}
	m := checkConverted(t, host, "test/busybox", "esgz", "v1")

	t.Run("again", func(t *testing.T) {
		// Same input and options: same blobs, nothing uploaded again.
		out, err := runImageCommand(t, ctx, "convert", repo+":v1", repo+":esgz",
			"--prioritized-files", "/bin/sh,/bin/busybox", "--chunk-size", "64K")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(out, "already in registry") != 2 {
			t.Errorf("second conversion uploaded layers again:\n%s", out)
		}
		if got := manifestDigest(t, host, "test/busybox", "esgz"); !strings.Contains(out, got.String()) {
			t.Errorf("tag esgz is %s, output:\n%s", got, out)
		}
		var m2 ocispec.Manifest
		b, _ := registryGet(t, host, "test/busybox/manifests/esgz", acceptManifests)
		must(t, json.Unmarshal(b, &m2))
		if m2.Layers[0].Digest != m.Layers[0].Digest {
			t.Error("layer digests changed between identical conversions")
		}
	})

	t.Run("index", func(t *testing.T) {
		// A multi-platform index: this machine's platform points at the
		// OCI copy, another platform at the Docker one.
		here := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
		other := ocispec.Platform{OS: "linux", Architecture: "arm64"}
		if runtime.GOARCH == "arm64" {
			other.Architecture = "amd64"
		}
		ociB, _ := registryGet(t, host, "test/busybox/manifests/v1-oci", acceptManifests)
		dockerB, _ := registryGet(t, host, "test/busybox/manifests/v1", acceptManifests)
		idx := ocispec.Index{
			Versioned: specsV2,
			MediaType: oci.MediaTypeOCIIndex,
			Manifests: []ocispec.Descriptor{
				{MediaType: oci.MediaTypeDockerManifest, Digest: digest.FromBytes(dockerB), Size: int64(len(dockerB)), Platform: &other},
				{MediaType: oci.MediaTypeOCIManifest, Digest: digest.FromBytes(ociB), Size: int64(len(ociB)), Platform: &here},
			},
		}
		ib, _ := json.Marshal(idx)
		registryPut(t, host, "test/busybox/manifests/multi", oci.MediaTypeOCIIndex, ib)

		out, err := runImageCommand(t, ctx, "convert", repo+":multi", repo+":multi-esgz",
			"--prioritized-files", "/bin/sh,/bin/busybox", "--chunk-size", "64K")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "manifest "+digest.FromBytes(ociB).String()) {
			t.Errorf("default platform did not pick the %s entry:\n%s", here.Architecture, out)
		}
		checkConverted(t, host, "test/busybox", "multi-esgz", "v1-oci")

		out, err = runImageCommand(t, ctx, "convert", repo+":multi", repo+":other-esgz", "--platform", "linux/"+other.Architecture)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "manifest "+digest.FromBytes(dockerB).String()) {
			t.Errorf("--platform linux/%s did not pick its entry:\n%s", other.Architecture, out)
		}
		if _, err := runImageCommand(t, ctx, "convert", repo+":multi", repo+":x", "--platform", "linux/s390x"); err == nil ||
			!strings.Contains(err.Error(), "linux/s390x") {
			t.Errorf("missing platform: %v", err)
		}
	})

	t.Run("min-chunk-size", func(t *testing.T) {
		// Small files share a gzip stream: /etc/data.bin and /etc/hello of
		// layer 1 are found at one TOC offset, at different inner offsets.
		if _, err := runImageCommand(t, ctx, "convert", repo+":v1", repo+":esgz-min",
			"--prioritized-files", "/bin/sh,/bin/busybox", "--chunk-size", "64K", "--min-chunk-size", "64K"); err != nil {
			t.Fatal(err)
		}
		m := checkConverted(t, host, "test/busybox", "esgz-min", "v1")
		blob, _ := registryGet(t, host, "test/busybox/blobs/"+m.Layers[0].Digest.String(), "")
		r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
		must(t, err)
		data, ok1 := r.ChunkEntryForOffset("etc/data.bin", 0)
		hello, ok2 := r.ChunkEntryForOffset("etc/hello", 0)
		if !ok1 || !ok2 || data.Offset != hello.Offset || data.InnerOffset == hello.InnerOffset {
			t.Errorf("etc/data.bin %+v and etc/hello %+v do not share a stream", data, hello)
		}
		f, err := r.OpenFile("etc/hello")
		must(t, err)
		if got, _ := io.ReadAll(io.NewSectionReader(f, 0, 6)); string(got) != "hello\n" {
			t.Errorf("etc/hello reads %q", got)
		}
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := runImageCommand(t, ctx, "convert", repo+":nope", repo+":x"); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("missing tag: %v", err)
		}
		if _, err := runImageCommand(t, ctx, "convert", repo+":v1", repo+"@"+digest.FromString("x").String()); err == nil {
			t.Error("digest DST: want error")
		}
		// Nothing was pushed under x.
		resp, err := http.Get("http://" + host + "/v2/test/busybox/manifests/x")
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("tag x exists after failed conversions: %s", resp.Status)
		}
	})
}

// startContainerd runs a private containerd (own root, state and socket)
// and returns its socket.
func startContainerd(t *testing.T) string {
	t.Helper()
	needTools(t, "containerd")
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	dir, err := os.MkdirTemp("", "dfctl-ctd-") // short: unix socket paths are limited
	must(t, err)
	sock := filepath.Join(dir, "c.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = %q
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "debug.sock"))
	cfgPath := filepath.Join(dir, "config.toml")
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o644))
	t.Cleanup(func() { os.RemoveAll(dir) }) // runs after containerd stopped (cleanups are LIFO)
	startProc(t, dir, "containerd", "--config", cfgPath)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := containerd.New(sock, containerd.WithTimeout(time.Second))
		if err == nil {
			_, err = c.Version(context.Background())
			c.Close()
			if err == nil {
				return sock
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestImagePullE2E pulls a converted image into containerd's overlayfs
// snapshotter (df-snapshotter is tested in testenv/e2e) and checks that the
// layer annotations reached the snapshotter as labels.
func TestImagePullE2E(t *testing.T) {
	needTools(t, "docker-registry")
	host := startRegistry(t)
	repo := host + "/test/busybox"
	pushBusybox(t, repo)
	sock := startContainerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if _, err := runImageCommand(t, ctx, "convert", repo+":v1", repo+":esgz", "--compression-level", "1"); err != nil {
		t.Fatal(err)
	}
	const ns = "dfctl-test"
	out, err := runImageCommand(t, ctx, "pull", repo+":esgz", "--address", sock, "--namespace", ns, "--snapshotter", "overlayfs")
	if err != nil {
		t.Fatal(err)
	}
	// overlayfs has no remote layers: everything is downloaded.
	if !strings.Contains(out, "2 layers, 0 mounted remotely, 2 downloaded") {
		t.Errorf("pull output:\n%s", out)
	}

	c, err := containerd.New(sock)
	must(t, err)
	defer c.Close()
	cctx := namespaces.WithNamespace(ctx, ns)
	img, err := c.GetImage(cctx, repo+":esgz")
	if err != nil {
		t.Fatalf("image not in containerd: %v", err)
	}
	if ok, err := img.IsUnpacked(cctx, "overlayfs"); !ok || err != nil {
		t.Errorf("unpacked %v %v", ok, err)
	}
	mb, _ := registryGet(t, host, "test/busybox/manifests/esgz", acceptManifests)
	var m ocispec.Manifest
	must(t, json.Unmarshal(mb, &m))
	diffIDs, err := img.RootFS(cctx)
	must(t, err)
	chain := identity.ChainIDs(diffIDs)
	sn := c.SnapshotService("overlayfs")
	for i, l := range m.Layers {
		info, err := sn.Stat(cctx, chain[i].String())
		if err != nil {
			t.Fatalf("layer %d snapshot: %v", i, err)
		}
		want := map[string]string{
			labels.ImageRef:       repo + ":esgz",
			labels.LayerDigest:    l.Digest.String(),
			labels.CRIImageRef:    repo + ":esgz", // for stargz-snapshotter
			labels.CRILayerDigest: l.Digest.String(),
			labels.TOCDigest:      l.Annotations[estargz.TOCJSONDigestAnnotation],
		}
		for k, v := range want {
			if info.Labels[k] != v {
				t.Errorf("layer %d snapshot label %s = %q, want %q (labels %v)", i, k, info.Labels[k], v, info.Labels)
			}
		}
	}

	// A snapshotter containerd does not have fails before pulling.
	if _, err := runImageCommand(t, ctx, "pull", repo+":esgz", "--address", sock, "--namespace", ns); err == nil ||
		!strings.Contains(err.Error(), `no snapshotter "damselfly"`) {
		t.Errorf("missing snapshotter: %v", err)
	}
	// No containerd.
	if _, err := runImageCommand(t, ctx, "pull", repo+":esgz", "--address", filepath.Join(t.TempDir(), "none.sock"), "--connect-timeout", "1s"); err == nil {
		t.Error("no containerd: want error")
	}
}
