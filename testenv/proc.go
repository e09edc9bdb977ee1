package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BinDirEnv names the environment variable that, when set, gives a directory
// of prebuilt binaries for BuildBinaries to return instead of building.
const BinDirEnv = "DAMSELFLY_BIN_DIR"

// killWait bounds how long a kill waits for the process to be reaped.
const killWait = 10 * time.Second

var build struct {
	once sync.Once
	dir  string
	out  []byte
	err  error
}

// BuildBinaries returns a directory holding the supernode, dfdaemon and dfget
// binaries. Unless $DAMSELFLY_BIN_DIR is set (then it is returned as is), it
// runs `go build -o DIR ./cmd/...` at the module root (found by walking up
// from the working directory to go.mod) into a fresh temporary directory,
// once per process; later calls return the same directory, or the same
// failure. A failed build fails the test with the build output. The
// directory outlives the test; RemoveBinaries deletes it.
func BuildBinaries(t TB) (binDir string) {
	t.Helper()
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return dir
	}
	build.once.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			build.err = err
			return
		}
		dir, err := os.MkdirTemp("", "damselfly-bin-")
		if err != nil {
			build.err = err
			return
		}
		cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/...")
		cmd.Dir = root
		build.out, build.err = cmd.CombinedOutput()
		if build.err != nil {
			os.RemoveAll(dir)
			return
		}
		build.dir = dir
	})
	if build.err != nil {
		t.Fatalf("testenv: building ./cmd/...: %v\n%s", build.err, build.out)
	}
	return build.dir
}

// RemoveBinaries deletes the directory BuildBinaries built into, if any (not
// a $DAMSELFLY_BIN_DIR one). Call it at the end of TestMain or of a program;
// BuildBinaries must not be called afterwards.
func RemoveBinaries() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// ModuleRoot returns the nearest directory at or above the working directory
// that holds a go.mod file.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// ErrWaitTimeout is returned by Proc.Wait when the process has not exited in
// time.
var ErrWaitTimeout = errors.New("testenv: process still running")

// Proc is a process started by Start, in its own process group, with its
// stdout and stderr going to a log file. Its methods are safe for concurrent
// use.
type Proc struct {
	// Name is the name given to Start.
	Name string
	// Cmd is the running command; do not call its Wait.
	Cmd *exec.Cmd
	// LogPath is the file receiving the process' stdout and stderr.
	LogPath string

	done     chan struct{} // closed once Cmd.Wait returned
	exitCode int
	waitErr  error
}

// Start runs binDir/name (or name itself if it is an absolute path) with
// args, in its own process group, with stdout and stderr appended to a log
// file in t.TempDir(). When the test ends, t.Cleanup kills the whole group
// with SIGKILL and reaps the process; if the test failed, it then prints the
// last 60 lines of the log with t.Logf. Start does not wait for the process
// to be ready; a process that cannot be started fails the test.
func Start(t TB, binDir, name string, args ...string) *Proc {
	t.Helper()
	path := name
	if !filepath.IsAbs(name) {
		path = filepath.Join(binDir, name)
	}
	logf, err := os.CreateTemp(t.TempDir(), filepath.Base(name)+"-*.log")
	if err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "# %s %s\n", path, strings.Join(args, " "))

	cmd := exec.Command(path, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := startCmd(cmd); err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, LogPath: logf.Name(), done: make(chan struct{})}
	go p.reap()
	t.Cleanup(func() {
		p.Kill9()
		if !p.Exited() {
			t.Logf("testenv: %s (pid %d) did not exit within %v of SIGKILL", p.Name, cmd.Process.Pid, killWait)
		}
		if t.Failed() {
			t.Logf("--- last 60 lines of %s log (%s) ---\n%s", p.Name, p.LogPath, p.Tail(60))
		}
	})
	return p
}

// reap is the only caller of Cmd.Wait; it publishes the result by closing done.
func (p *Proc) reap() {
	err := p.Cmd.Wait()
	st := p.Cmd.ProcessState
	switch {
	case st == nil:
		p.exitCode, p.waitErr = -1, err
	case st.Exited():
		p.exitCode = st.ExitCode()
	default:
		p.exitCode = -1
		p.waitErr = fmt.Errorf("testenv: %s %v", p.Name, st) // e.g. "signal: killed"
	}
	close(p.done)
}

// Pid returns the process id (also the process group id).
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Kill9 sends SIGKILL to the process' group and waits (up to 10 s) until the
// process is reaped. It is harmless on an exited process.
func (p *Proc) Kill9() {
	pid := p.Cmd.Process.Pid
	// The group outlives its leader while other members remain, so kill it
	// even if the leader already exited.
	syscall.Kill(-pid, syscall.SIGKILL)
	if !p.Exited() {
		p.Cmd.Process.Signal(syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-time.After(killWait):
	}
}

// Signal sends sig to the process (not its group). Errors, such as the
// process having exited, are ignored.
func (p *Proc) Signal(sig os.Signal) {
	if !p.Exited() {
		p.Cmd.Process.Signal(sig)
	}
}

// Wait waits up to timeout (forever if timeout <= 0) for the process to
// exit, and returns its exit code. If it was killed by a signal, the code is
// -1 and err says which signal; if it is still running after timeout, the
// code is -1 and err is ErrWaitTimeout. It may be called any number of
// times, concurrently, and together with the test's cleanup.
func (p *Proc) Wait(timeout time.Duration) (exitCode int, err error) {
	if timeout <= 0 {
		<-p.done
		return p.exitCode, p.waitErr
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.exitCode, p.waitErr
	case <-timer.C:
		return -1, fmt.Errorf("%w after %v: %s", ErrWaitTimeout, timeout, p.Name)
	}
}

// Done returns a channel closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited (and been reaped).
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Log returns the whole log so far (stdout and stderr, after a first line
// giving the command).
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("<reading %s: %v>", p.LogPath, err)
	}
	return string(b)
}

// Tail returns the last n lines of the log, reading at most its last 256 KiB.
func (p *Proc) Tail(n int) string {
	return tailFile(p.LogPath, n, 256<<10)
}

func tailFile(path string, n int, maxBytes int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("<reading %s: %v>", path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Sprintf("<reading %s: %v>", path, err)
	}
	off := max(size-maxBytes, 0)
	b := make([]byte, size-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return fmt.Sprintf("<reading %s: %v>", path, err)
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // first one is probably partial
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago
// (listen on port 0, close). Another process may take it before it is used.
func FreePort(t TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: FreePort: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ListenLoopback listens on a free TCP port of 127.0.0.1; t.Cleanup closes
// the listener (harmless once its server closed it).
func ListenLoopback(t TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: listen on loopback: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// WaitHTTP polls url with GET until it answers 200, and fails the test if it
// does not within timeout.
func WaitHTTP(t TB, url string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	if err := waitHealthy(client, url, timeout, nil); err != nil {
		t.Fatalf("testenv: WaitHTTP: %v", err)
	}
}

// errExited is returned by waitHealthy when the watched process exited.
var errExited = errors.New("process exited")

// waitHealthy polls url with GET until it answers 200, for up to timeout. If
// p is not nil and exits meanwhile, it returns an error wrapping errExited.
func waitHealthy(client *http.Client, url string, timeout time.Duration, p *Proc) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if p != nil && p.Exited() {
			code, err := p.Wait(0)
			why := fmt.Sprintf("exit code %d", code)
			if err != nil {
				why = err.Error()
			}
			return fmt.Errorf("%s: %w (%s) before %s answered 200", p.Name, errExited, why, url)
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			cancel()
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if ctx.Err() == nil || last == nil {
			last = err // else keep the previous, more telling, error
		}
		cancel()
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%s not healthy after %v: %v", url, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
