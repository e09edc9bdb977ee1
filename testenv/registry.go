package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Debian's OCI tooling that the registry helpers use.
const (
	RegistryBin = "/usr/bin/docker-registry"
	UmociBin    = "umoci"
	SkopeoBin   = "skopeo"
	BusyboxBin  = "/bin/busybox"
)

// RegistryOptions configures StartRegistry.
type RegistryOptions struct {
	// Notify, when set, is a URL the registry sends its notifications to
	// (distribution's notifications.endpoints), e.g. a supernode's
	// /api/v1/registry/notifications.
	Notify string
	// ExtraConfig is YAML appended to the generated config.
	ExtraConfig string
	// Front, when set, is the loopback listener the counting front serves
	// on (ListenLoopback), so that its address can be known, and allowed
	// as an origin (AllowOrigins), before a supernode that the registry
	// notifies is started. StartRegistry takes it over.
	Front net.Listener
}

// Registry is a running docker-registry (distribution 2.8) on loopback,
// behind a counting reverse proxy in the test process: clients use Addr,
// and every request and blob byte they cause is counted.
type Registry struct {
	Proc *Proc
	// Addr is host:port of the counting front; the registry builds its
	// absolute URLs (notifications, Location) with it.
	Addr string
	// Backend is the registry process' own address (not counted).
	Backend string
	// Dir holds the registry's storage and config.
	Dir string

	blobGets, blobHeads, blobBytes, manifestGets atomic.Int64

	mu       sync.Mutex
	requests []string
}

var blobGetPath = regexp.MustCompile(`^/v2/.+/blobs/sha256:[a-f0-9]{64}$`)

// StartRegistry starts Debian's docker-registry with filesystem storage in
// a temporary directory, on a free loopback port, behind a counting front,
// and waits until GET /v2/ answers 200. A missing binary fails the test
// (apt-get install docker-registry).
func StartRegistry(t TB, opts RegistryOptions) *Registry {
	t.Helper()
	if _, err := os.Stat(RegistryBin); err != nil {
		t.Fatalf("testenv: %s not found (apt-get install docker-registry): %v", RegistryBin, err)
	}
	r := &Registry{Dir: t.TempDir()}
	front := opts.Front
	if front == nil {
		front = ListenLoopback(t)
	}
	r.Addr = front.Addr().String()
	for attempt := 0; ; attempt++ {
		r.Backend = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		cfg := filepath.Join(r.Dir, "config.yml")
		if err := os.WriteFile(cfg, []byte(r.config(opts)), 0o644); err != nil {
			t.Fatalf("testenv: registry config: %v", err)
		}
		r.Proc = Start(t, "", RegistryBin, "serve", cfg)
		client := &http.Client{Timeout: time.Second}
		err := waitHealthy(client, "http://"+r.Backend+"/v2/", HealthTimeout, r.Proc)
		client.CloseIdleConnections()
		if err == nil {
			break
		}
		r.Proc.Kill9()
		if attempt >= startAttempts-1 || !strings.Contains(r.Proc.Tail(20), "address already in use") {
			front.Close()
			t.Fatalf("testenv: docker-registry: %v\n%s", err, r.Proc.Tail(40))
		}
	}
	backend, _ := url.Parse("http://" + r.Backend)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(backend)
			pr.Out.Host = pr.In.Host // the registry builds URLs from it
		},
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.Method == http.MethodGet && blobGetPath.MatchString(resp.Request.URL.Path) {
				resp.Body = &countingReadCloser{ReadCloser: resp.Body, n: &r.blobBytes}
			}
			return nil
		},
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.count(req)
		rp.ServeHTTP(w, req)
	})}
	go srv.Serve(front)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *Registry) config(opts RegistryOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: %s
  host: http://%s
`, filepath.Join(r.Dir, "data"), r.Backend, r.Addr)
	if opts.Notify != "" {
		fmt.Fprintf(&b, `notifications:
  endpoints:
    - name: damselfly
      url: %s
      timeout: 5s
      threshold: 10
      backoff: 500ms
`, opts.Notify)
	}
	b.WriteString(opts.ExtraConfig)
	return b.String()
}

func (r *Registry) count(req *http.Request) {
	r.mu.Lock()
	r.requests = append(r.requests, req.Method+" "+req.URL.RequestURI())
	r.mu.Unlock()
	switch {
	case blobGetPath.MatchString(req.URL.Path) && req.Method == http.MethodGet:
		r.blobGets.Add(1)
	case blobGetPath.MatchString(req.URL.Path) && req.Method == http.MethodHead:
		r.blobHeads.Add(1)
	case strings.Contains(req.URL.Path, "/manifests/") && req.Method == http.MethodGet:
		r.manifestGets.Add(1)
	}
}

// URL returns http://Addr + path.
func (r *Registry) URL(path string) string { return "http://" + r.Addr + path }

// BlobBytes is the blob body bytes the registry sent (GETs through Addr)
// since the last ResetCounters: its egress for layers and configs.
func (r *Registry) BlobBytes() int64 { return r.blobBytes.Load() }

// BlobGets and BlobHeads count blob requests; ManifestGets manifest GETs.
func (r *Registry) BlobGets() int64     { return r.blobGets.Load() }
func (r *Registry) BlobHeads() int64    { return r.blobHeads.Load() }
func (r *Registry) ManifestGets() int64 { return r.manifestGets.Load() }

// Requests returns "METHOD URI" of every request since the last reset.
func (r *Registry) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

// ResetCounters zeroes the counters and the request log.
func (r *Registry) ResetCounters() {
	r.blobGets.Store(0)
	r.blobHeads.Store(0)
	r.blobBytes.Store(0)
	r.manifestGets.Store(0)
	r.mu.Lock()
	r.requests = nil
	r.mu.Unlock()
}

type countingReadCloser struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingReadCloser) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// ImageFile is a file added to an image in a layer of its own.
type ImageFile struct {
	// Path is where the file goes in the image (absolute).
	Path string
	// Data is its content, or, when nil, Random bytes of random content
	// from Seed (see RandomReader).
	Data   []byte
	Random int64
	Seed   int64
}

// ImageOptions configures BuildImage.
type ImageOptions struct {
	// Tag in the OCI layout ("latest").
	Tag string
	// Files are added after the busybox layer, one layer each.
	Files []ImageFile
	// Cmd is the image's default command (["/bin/sh"]).
	Cmd []string
}

// Descriptor is a blob of an image.
type Descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// Image is an OCI image layout built by BuildImage.
type Image struct {
	// Layout is the OCI layout directory; Tag the tag in it.
	Layout, Tag string
	Manifest    Descriptor
	Config      Descriptor
	// Layers are in order: busybox first, then one per file.
	Layers []Descriptor
	// FileSHA256 maps each added file's path to the hex sha256 of its content.
	FileSHA256 map[string]string
}

// Blobs are the config and the layers.
func (im *Image) Blobs() []Descriptor { return append([]Descriptor{im.Config}, im.Layers...) }

// BlobBytes is the size of all blobs: what a pull fetches besides the manifest.
func (im *Image) BlobBytes() int64 {
	var n int64
	for _, d := range im.Blobs() {
		n += d.Size
	}
	return n
}

// BuildImage builds a runnable image with umoci: a layer with
// busybox-static at /bin/busybox and its applets (sh, ls, cat, sha256sum,
// ...) linked in /bin, then one layer per file.
func BuildImage(t TB, opts ImageOptions) *Image {
	t.Helper()
	if _, err := os.Stat(BusyboxBin); err != nil {
		t.Fatalf("testenv: %s not found (apt-get install busybox-static): %v", BusyboxBin, err)
	}
	if opts.Tag == "" {
		opts.Tag = "latest"
	}
	if len(opts.Cmd) == 0 {
		opts.Cmd = []string{"/bin/sh"}
	}
	dir := t.TempDir()
	im := &Image{Layout: filepath.Join(dir, "oci"), Tag: opts.Tag, FileSHA256: map[string]string{}}
	ref := im.Layout + ":" + opts.Tag
	umoci := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(UmociBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("testenv: umoci %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	umoci("init", "--layout", im.Layout)
	umoci("new", "--image", ref)
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := CopyFile(BusyboxBin, filepath.Join(rootfs, "bin", "busybox"), 0o755); err != nil {
		t.Fatalf("testenv: copy busybox: %v", err)
	}
	for _, applet := range []string{"sh", "ls", "cat", "echo", "sha256sum", "md5sum", "head", "wc", "true", "sleep", "stat"} {
		os.Symlink("busybox", filepath.Join(rootfs, "bin", applet))
	}
	umoci("insert", "--image", ref, rootfs, "/")
	for i, f := range opts.Files {
		src := filepath.Join(dir, "file"+strconv.Itoa(i))
		out, err := os.Create(src)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		var sum string
		if f.Data != nil {
			_, err = out.Write(f.Data)
			sum = sha256Hex(f.Data)
		} else {
			sum, err = writeRandom(out, f.Random, f.Seed)
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("testenv: write image file %s: %v", f.Path, err)
		}
		os.Chmod(src, 0o644)
		umoci("insert", "--image", ref, src, f.Path)
		im.FileSHA256[f.Path] = sum
	}
	cfgArgs := []string{"config", "--image", ref, "--os", "linux", "--architecture", runtime.GOARCH}
	for _, c := range opts.Cmd {
		cfgArgs = append(cfgArgs, "--config.cmd", c)
	}
	umoci(cfgArgs...)
	umoci("gc", "--layout", im.Layout)
	im.readLayout(t)
	return im
}

func (im *Image) readLayout(t TB) {
	t.Helper()
	var index struct {
		Manifests []struct {
			Descriptor
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := readJSON(filepath.Join(im.Layout, "index.json"), &index); err != nil {
		t.Fatalf("testenv: image index: %v", err)
	}
	for _, m := range index.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == im.Tag {
			im.Manifest = m.Descriptor
		}
	}
	if im.Manifest.Digest == "" {
		t.Fatalf("testenv: tag %s not in %s", im.Tag, im.Layout)
	}
	var man struct {
		Config Descriptor   `json:"config"`
		Layers []Descriptor `json:"layers"`
	}
	if err := readJSON(im.blobPath(im.Manifest.Digest), &man); err != nil {
		t.Fatalf("testenv: image manifest: %v", err)
	}
	im.Config, im.Layers = man.Config, man.Layers
}

func (im *Image) blobPath(digest string) string {
	alg, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(im.Layout, "blobs", alg, hex)
}

// Push copies the image to a registry with skopeo: ref is HOST:PORT/NAME:TAG
// (plain HTTP); extra are more skopeo copy flags (--dest-creds ...).
func (im *Image) Push(t TB, ref string, extra ...string) {
	t.Helper()
	args := append([]string{"copy", "--insecure-policy", "--dest-tls-verify=false"}, extra...)
	args = append(args, "oci:"+im.Layout+":"+im.Tag, "docker://"+ref)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, SkopeoBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// CopyFile copies src to dst (created or truncated with mode).
func CopyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
