package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/wire"
)

// HealthTimeout is how long StartSupernode, Restart and StartDaemon wait for
// a component to become healthy.
const HealthTimeout = 15 * time.Second

// LogLevelEnv names the environment variable giving the --log-level passed
// to the supernode when extra arguments do not set one (default "debug").
const LogLevelEnv = "DAMSELFLY_LOG_LEVEL"

// startAttempts bounds restarts on a fresh port when a component loses the
// race for the port FreePort returned.
const startAttempts = 3

// Supernode is a running supernode process.
type Supernode struct {
	// Proc is the current process; Restart replaces it.
	Proc *Proc
	// Addr is the listen address, 127.0.0.1:port; it survives Restart.
	Addr string
	// DataDir is the supernode's --data-dir; it survives Restart.
	DataDir string

	binDir string
	extra  []string
	trust  *Trust
}

// StartSupernode runs `supernode --listen 127.0.0.1:PORT --data-dir DIR
// [--log-level debug] [extra...]` with a free port and a data dir from
// t.TempDir(), and waits up to 15 s until GET /healthz answers 200. The log
// level is $DAMSELFLY_LOG_LEVEL or debug, unless extra has --log-level.
func StartSupernode(t TB, binDir string, extra ...string) *Supernode {
	t.Helper()
	return startSupernode(t, binDir, nil, extra)
}

func startSupernode(t TB, binDir string, tr *Trust, extra []string) *Supernode {
	t.Helper()
	s := &Supernode{DataDir: t.TempDir(), binDir: binDir, extra: append([]string(nil), extra...), trust: tr}
	var err error
	for range startAttempts {
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		if err = s.start(t); err == nil || !portTaken(s.Proc, err) {
			break
		}
		s.Proc.Kill9()
	}
	if err != nil {
		t.Fatalf("testenv: supernode: %v\n%s", err, s.Proc.Tail(60))
	}
	return s
}

func (s *Supernode) start(t TB) error {
	args := []string{"--listen", s.Addr, "--data-dir", s.DataDir}
	if !hasFlag(s.extra, "--log-level") {
		level := os.Getenv(LogLevelEnv)
		if level == "" {
			level = "debug"
		}
		args = append(args, "--log-level", level)
	}
	args = append(args, s.extra...)
	s.Proc = Start(t, s.binDir, "supernode", args...)
	client := s.trust.HTTPClient(t, time.Second)
	defer client.CloseIdleConnections()
	return waitHealthy(client, s.URL("/healthz"), HealthTimeout, s.Proc)
}

// URL returns the supernode's URL for path, e.g. URL("/healthz"); https
// when it was started with TLS.
func (s *Supernode) URL(path string) string { return s.trust.Scheme() + "://" + s.Addr + path }

// Trust is the material the supernode was started with (nil for a plain
// one).
func (s *Supernode) Trust() *Trust { return s.trust }

// Restart kills the supernode with SIGKILL and starts it again with the same
// address, data dir and arguments, then waits until it is healthy. It must
// not be called concurrently with other uses of s.
func (s *Supernode) Restart(t TB) {
	t.Helper()
	s.Proc.Kill9()
	var err error
	for range startAttempts {
		// The port was just released; retry if something took it meanwhile
		// (or if the kernel has not yet let it go).
		if err = s.start(t); err == nil || !portTaken(s.Proc, err) {
			break
		}
		s.Proc.Kill9()
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("testenv: supernode restart: %v\n%s", err, s.Proc.Tail(60))
	}
}

// Status is the supernode's GET /api/v1/status answer (wire.Status), with
// test look-ups.
type Status wire.Status

// TaskStatus is one task in Status.
type TaskStatus = wire.TaskStatus

// PeerStatus is one peer in Status.
type PeerStatus = wire.PeerStatus

// Task returns the task with the given URL, or nil.
func (st Status) Task(url string) *TaskStatus {
	for i := range st.Tasks {
		if st.Tasks[i].URL == url {
			return &st.Tasks[i]
		}
	}
	return nil
}

// Status fetches and decodes GET /api/v1/status (with the admin token, and
// over TLS, when the supernode has them), failing the test on error.
func (s *Supernode) Status(t TB) Status {
	t.Helper()
	client := s.trust.HTTPClient(t, 10*time.Second)
	defer client.CloseIdleConnections()
	var st Status
	if err := getJSON(client, s.URL("/api/v1/status"), s.trust.AdminBearer(), &st); err != nil {
		t.Fatalf("testenv: supernode status: %v", err)
	}
	return st
}

// getJSON GETs url, with bearer as Authorization when not empty, and
// decodes a 200 answer into v.
func getJSON(client *http.Client, url, bearer string, v any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytesPrefix(body, 512))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decoding: %v: %s", url, err, bytesPrefix(body, 512))
	}
	return nil
}

func bytesPrefix(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// Daemon is a running dfdaemon process.
type Daemon struct {
	// Proc is the dfdaemon process.
	Proc *Proc
	// Sock is the path of its unix control socket.
	Sock string
	// UploadAddr is its peer upload address, 127.0.0.1:port.
	UploadAddr string
	// DataDir is its --data-dir.
	DataDir string
}

// StartDaemon runs `dfdaemon --supernode SUPERNODE --data-dir DIR
// --upload-listen 127.0.0.1:PORT --sock PATH [extra...]` (pass --upload-limit
// and --download-limit in extra) with a free port, a data dir from
// t.TempDir() and a socket in a short temporary directory (unix socket paths
// are limited to about 100 bytes), and waits up to 15 s until the socket
// answers GET http://unix/healthz with 200.
func StartDaemon(t TB, binDir, supernodeAddr string, extra ...string) *Daemon {
	t.Helper()
	sockDir := shortTempDir(t)
	d := &Daemon{Sock: filepath.Join(sockDir, "dfdaemon.sock"), DataDir: t.TempDir()}
	var err error
	for range startAttempts {
		os.Remove(d.Sock)
		d.UploadAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		args := append([]string{
			"--supernode", supernodeAddr,
			"--data-dir", d.DataDir,
			"--upload-listen", d.UploadAddr,
			"--sock", d.Sock,
		}, extra...)
		d.Proc = Start(t, binDir, "dfdaemon", args...)
		client := d.Client()
		client.Timeout = time.Second
		err = waitHealthy(client, "http://unix/healthz", HealthTimeout, d.Proc)
		client.CloseIdleConnections()
		if err == nil || !portTaken(d.Proc, err) {
			break
		}
		d.Proc.Kill9()
	}
	if err != nil {
		t.Fatalf("testenv: dfdaemon: %v\n%s", err, d.Proc.Tail(60))
	}
	return d
}

// Client returns an HTTP client whose connections go to the daemon's unix
// socket, whatever the URL's host (use http://unix/...).
func (d *Daemon) Client() *http.Client {
	return UnixClient(d.Sock)
}

// UnixClient returns an HTTP client whose connections go to the unix socket
// at sock, whatever the URL's host.
func UnixClient(sock string) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, "unix", sock)
		},
	}
	return &http.Client{Transport: tr}
}

// shortTempDir returns a new directory with a short path, removed by
// t.Cleanup.
func shortTempDir(t TB) string {
	t.Helper()
	base := os.TempDir()
	if len(base) > 60 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "dfs")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Dfget starts, and does not wait for, `dfget URL -o OUT --supernode
// SUPERNODE --data-dir DIR --upload-listen 127.0.0.1:0 --no-progress
// [extra...]`, with a data dir from t.TempDir() unless extra has --data-dir.
// Use Proc.Wait for its exit code.
func Dfget(t TB, binDir, supernodeAddr, url, out string, extra ...string) *Proc {
	t.Helper()
	args := []string{url, "-o", out, "--supernode", supernodeAddr}
	if !hasFlag(extra, "--data-dir") {
		args = append(args, "--data-dir", t.TempDir())
	}
	args = append(args, "--upload-listen", "127.0.0.1:0", "--no-progress")
	args = append(args, extra...)
	return Start(t, binDir, "dfget", args...)
}

// SHA256File returns the SHA-256 of the file at path in hex, failing the
// test if it cannot be read.
func SHA256File(t TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("testenv: SHA256File: %v", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("testenv: SHA256File: %v", err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hasFlag reports whether args set flag, as "--flag value" or "--flag=value".
func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// portTaken reports whether a start failed because the process exited
// complaining that its address was in use, so it is worth retrying.
func portTaken(p *Proc, err error) bool {
	return errors.Is(err, errExited) && strings.Contains(p.Tail(60), "address already in use")
}
