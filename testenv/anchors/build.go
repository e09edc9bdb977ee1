package anchors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// Anchor is an outside system built from a Go module version.
type Anchor struct {
	// Name names the anchor and its cache directory, e.g. "dragonfly".
	Name string
	// Module and Version are what `go mod download` fetches.
	Module, Version string
	// Binaries maps each binary's name to its package, relative to the
	// module root ("./cmd/dfget").
	Binaries map[string]string
	// CGO builds with cgo (Kraken's sqlite driver needs it).
	CGO bool
}

// Dragonfly is Dragonfly 1.0.6: supernode and dfget.
var Dragonfly = Anchor{
	Name: "dragonfly", Module: "github.com/dragonflyoss/Dragonfly", Version: "v1.0.6",
	Binaries: map[string]string{"supernode": "./cmd/supernode", "dfget": "./cmd/dfget"},
}

// Kraken is Uber Kraken v0.1.4: origin, tracker, agent and the testfs
// storage backend.
var Kraken = Anchor{
	Name: "kraken", Module: "github.com/uber/kraken", Version: "v0.1.4", CGO: true,
	Binaries: map[string]string{"kraken-origin": "./origin", "kraken-tracker": "./tracker",
		"kraken-agent": "./agent", "kraken-testfs": "./tools/bin/testfs"},
}

// BuildOptions configures Build.
type BuildOptions struct {
	// CacheDir holds one directory of binaries per anchor version (default
	// $XDG_CACHE_HOME or $HOME/.cache, then damselfly/anchors).
	CacheDir string
	// Go is the go command (default "go" on $PATH, else /usr/local/go/bin/go).
	Go string
	// Nice runs the build under `nice -n 10` when nice is installed.
	Nice bool
	// Log receives progress lines (nil: none).
	Log io.Writer
}

// DefaultCacheDir is where built anchors are kept between runs.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("anchors: cache dir: %w", err)
	}
	return filepath.Join(d, "damselfly", "anchors"), nil
}

// Dir is the cache directory of a's binaries under cacheDir, keyed by name
// and version: CACHE/dragonfly-1.0.6.
func (a Anchor) Dir(cacheDir string) string {
	return filepath.Join(cacheDir, a.Name+"-"+strings.TrimPrefix(a.Version, "v"))
}

// stampFile marks a complete cache directory.
const stampFile = ".complete"

// Cached reports whether every binary of a is in cacheDir.
func (a Anchor) Cached(cacheDir string) bool {
	dir := a.Dir(cacheDir)
	if _, err := os.Stat(filepath.Join(dir, stampFile)); err != nil {
		return false
	}
	for name := range a.Binaries {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Build returns the directory holding a's binaries, building them first
// unless they are cached: it downloads the module through the Go module
// proxy, copies the module tree to a writable temporary directory (the
// module cache is read-only) and runs `go build` there with -mod=mod, so
// that the module's own go.mod and go.sum decide its dependencies. The
// binaries are moved into the cache only once all of them built.
func Build(ctx context.Context, a Anchor, o BuildOptions) (string, error) {
	if o.CacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return "", err
		}
		o.CacheDir = d
	}
	dir := a.Dir(o.CacheDir)
	if a.Cached(o.CacheDir) {
		return dir, nil
	}
	goBin, err := findGo(o.Go)
	if err != nil {
		return "", fmt.Errorf("build %s %s: %w", a.Name, a.Version, err)
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "%s anchors: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
		}
	}
	tmp, err := os.MkdirTemp("", "anchor-"+a.Name+"-")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", a.Name, err)
	}
	defer os.RemoveAll(tmp)

	logf("downloading %s@%s", a.Module, a.Version)
	src, err := modDownload(ctx, goBin, tmp, a.Module+"@"+a.Version)
	if err != nil {
		return "", fmt.Errorf("build %s: %w", a.Name, err)
	}
	tree := filepath.Join(tmp, "src")
	if err := copyTree(src, tree); err != nil {
		return "", fmt.Errorf("build %s: copy module tree: %w", a.Name, err)
	}
	out := filepath.Join(tmp, "bin")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	for name, pkg := range a.Binaries {
		logf("building %s %s (%s)", a.Name, name, pkg)
		args := []string{goBin, "build", "-trimpath", "-o", filepath.Join(out, name), pkg}
		if o.Nice {
			if nice, err := exec.LookPath("nice"); err == nil {
				args = append([]string{nice, "-n", "10"}, args...)
			}
		}
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = tree
		cmd.Env = buildEnv(a.CGO)
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s %s: go build %s: %w: %s", a.Name, a.Version, pkg, err, tail(b, 2000))
		}
	}
	if err := os.WriteFile(filepath.Join(out, stampFile), []byte(a.Module+"@"+a.Version+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", a.Name, err)
	}
	os.RemoveAll(dir) // an incomplete earlier attempt
	if err := os.Rename(out, dir); err != nil {
		// Across file systems: copy instead.
		if err := copyTree(out, dir); err != nil {
			return "", fmt.Errorf("build %s: install into %s: %w", a.Name, dir, err)
		}
	}
	logf("built %s %s into %s", a.Name, a.Version, dir)
	return dir, nil
}

// buildEnv is the environment of an anchor's go commands: modules on, the
// module's own go.mod in charge (-mod=mod: old go.sum files lack entries
// newer Go wants), no workspace of the caller, cgo as asked.
func buildEnv(cgo bool) []string {
	env := []string{"GO111MODULE=on", "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0"}
	if cgo {
		env[3] = "CGO_ENABLED=1"
	}
	var keep []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GO111MODULE", "GOFLAGS", "GOWORK", "CGO_ENABLED":
			continue
		}
		keep = append(keep, kv)
	}
	return append(keep, env...)
}

func findGo(goBin string) (string, error) {
	if goBin != "" {
		return goBin, nil
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go", nil
	}
	return "", errors.New("no go command found")
}

// modDownload runs `go mod download -json MOD@VER` outside any module and
// returns the module's directory in the module cache.
func modDownload(ctx context.Context, goBin, workDir, modVer string) (string, error) {
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", modVer)
	cmd.Dir = workDir
	cmd.Env = buildEnv(false)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	var info struct {
		Dir   string
		Error string
	}
	if jerr := json.Unmarshal(b, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", modVer, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w: %s", modVer, err, tail(stderr.Bytes(), 1000))
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no Dir in %q", modVer, tail(b, 500))
	}
	return info.Dir, nil
}

// copyTree copies the regular files and directories under src to dst,
// writable by the owner.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		return testenv.CopyFile(path, target, st.Mode().Perm()|0o200)
	})
}

// tail returns at most the last n bytes of b, as text.
func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
