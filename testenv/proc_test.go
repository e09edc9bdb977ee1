package testenv

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// shBinDir returns a directory with "sh" linked to /bin/sh.
func shBinDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink("/bin/sh", filepath.Join(dir, "sh")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestProcExitCodeAndLog(t *testing.T) {
	bin := shBinDir(t)
	p := Start(t, bin, "sh", "-c", "echo hi; echo oops >&2; exit 3")
	code, err := p.Wait(10 * time.Second)
	if err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v; want 3, nil", code, err)
	}
	if !p.Exited() {
		t.Error("Exited = false after Wait")
	}
	// Wait again: same answer.
	if code, err := p.Wait(time.Millisecond); code != 3 || err != nil {
		t.Errorf("second Wait = %d, %v", code, err)
	}
	log := p.Log()
	if !strings.Contains(log, "hi\n") || !strings.Contains(log, "oops\n") {
		t.Errorf("log = %q", log)
	}
	if filepath.Dir(p.LogPath) == "" || p.Name != "sh" {
		t.Errorf("LogPath %q Name %q", p.LogPath, p.Name)
	}

	ok := Start(t, bin, "sh", "-c", "true")
	if code, err := ok.Wait(10 * time.Second); code != 0 || err != nil {
		t.Errorf("true: %d, %v", code, err)
	}
	abs := Start(t, "", "/bin/sh", "-c", "exit 7")
	if code, err := abs.Wait(10 * time.Second); code != 7 || err != nil {
		t.Errorf("absolute name: %d, %v", code, err)
	}
}

func TestProcKill9AndTimeout(t *testing.T) {
	bin := shBinDir(t)
	p := Start(t, bin, "sh", "-c", "echo started; sleep 30")
	code, err := p.Wait(100 * time.Millisecond)
	if code != -1 || !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("Wait on running = %d, %v", code, err)
	}
	if p.Exited() {
		t.Fatal("Exited on a running process")
	}
	// Concurrent waiters all see the result.
	var wg sync.WaitGroup
	results := make([]error, 4)
	for i := range results {
		wg.Go(func() { _, results[i] = p.Wait(10 * time.Second) })
	}
	start := time.Now()
	p.Kill9()
	wg.Wait()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Kill9 took %v", d)
	}
	if !p.Exited() {
		t.Fatal("not exited after Kill9")
	}
	for _, err := range results {
		if err == nil || errors.Is(err, ErrWaitTimeout) || !strings.Contains(err.Error(), "killed") {
			t.Errorf("Wait after kill: %v", err)
		}
	}
	if code, _ := p.Wait(0); code != -1 {
		t.Errorf("code after kill = %d", code)
	}
	p.Kill9() // harmless again
	p.Signal(syscall.SIGTERM)
}

func TestProcSignal(t *testing.T) {
	bin := shBinDir(t)
	p := Start(t, bin, "sh", "-c", "trap 'echo got-term; exit 5' TERM; echo ready; while :; do sleep 0.05; done")
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(p.Log(), "\nready\n") })
	p.Signal(syscall.SIGTERM)
	code, err := p.Wait(10 * time.Second)
	if code != 5 || err != nil {
		t.Fatalf("Wait = %d, %v; log %q", code, err, p.Log())
	}
	if !strings.Contains(p.Log(), "got-term") {
		t.Errorf("log = %q", p.Log())
	}
}

// TestProcKillsGroup checks that Kill9 and the cleanup kill the children too.
func TestProcKillsGroup(t *testing.T) {
	bin := shBinDir(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	p := Start(t, bin, "sh", "-c", fmt.Sprintf("sleep 30 & echo $! > %s; wait", pidFile))
	var child int
	waitFor(t, 5*time.Second, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		child, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	if !alive(child) {
		t.Fatalf("child %d not running", child)
	}
	p.Kill9()
	waitFor(t, 5*time.Second, func() bool { return !alive(child) })
}

func TestProcCleanupKillsAndPrintsLogOnFailure(t *testing.T) {
	bin := shBinDir(t)
	for _, failed := range []bool{false, true} {
		t.Run(fmt.Sprint("failed=", failed), func(t *testing.T) {
			tb := newFakeTB(t)
			p := Start(tb, bin, "sh", "-c", "i=0; while [ $i -lt 100 ]; do echo line$i; i=$((i+1)); done; sleep 30")
			waitFor(t, 5*time.Second, func() bool { return strings.Contains(p.Log(), "line99") })
			if failed {
				tb.setFailed()
			}
			tb.close()
			if !p.Exited() {
				t.Fatal("cleanup did not kill the process")
			}
			logs := tb.allLogs()
			if !failed {
				if logs != "" {
					t.Errorf("logs on success: %q", logs)
				}
				return
			}
			if !strings.Contains(logs, "line99") || !strings.Contains(logs, "line40\n") || strings.Contains(logs, "line39\n") {
				t.Errorf("want lines 40..99 in the failure log, got %q", logs)
			}
		})
	}
}

func TestStartMissingBinaryFails(t *testing.T) {
	tb := newFakeTB(t)
	msg := expectFatal(t, func() { Start(tb, t.TempDir(), "no-such-binary") })
	if !strings.Contains(msg, "no-such-binary") {
		t.Errorf("Fatalf message %q", msg)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	os.WriteFile(path, []byte(b.String()), 0o644)
	if got := tailFile(path, 2, 1<<20); got != "line 998\nline 999" {
		t.Errorf("tail 2 = %q", got)
	}
	if got := tailFile(path, 1000, 30); strings.HasPrefix(got, "ine") || !strings.HasSuffix(got, "line 999") {
		t.Errorf("tail bounded by bytes = %q", got)
	}
	os.WriteFile(path, nil, 0o644)
	if got := tailFile(path, 5, 100); got != "" {
		t.Errorf("empty tail = %q", got)
	}
}

func TestFreePortAndWaitHTTP(t *testing.T) {
	port := FreePort(t)
	if port <= 0 || port > 65535 {
		t.Fatalf("port %d", port)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("FreePort gave an unusable port: %v", err)
	}
	ln.Close()

	o := NewOrigin(t)
	o.AddRandom("h", 1, 1)
	o.FailNext("h", 3, 503)
	WaitHTTP(t, o.URL("h"), 5*time.Second)
	if o.Requests("h") != 4 {
		t.Errorf("WaitHTTP made %d requests, want 4", o.Requests("h"))
	}

	tb := newFakeTB(t)
	o.SetStatus("h", 500)
	start := time.Now()
	msg := expectFatal(t, func() { WaitHTTP(tb, o.URL("h"), 300*time.Millisecond) })
	if !strings.Contains(msg, "500") {
		t.Errorf("Fatalf message %q", msg)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("WaitHTTP timeout took %v", d)
	}
}

func TestWaitHealthyNoticesExit(t *testing.T) {
	bin := shBinDir(t)
	p := Start(t, bin, "sh", "-c", "echo bind: address already in use; exit 1")
	err := waitHealthy(&http.Client{Timeout: time.Second}, "http://127.0.0.1:1/healthz", 10*time.Second, p)
	if !errors.Is(err, errExited) || !portTaken(p, err) {
		t.Fatalf("err = %v", err)
	}
}

func TestUnixHealth(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	c := UnixClient(sock)
	if err := waitHealthy(c, "http://unix/healthz", 5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if err := waitHealthy(c, "http://unix/other", 200*time.Millisecond, nil); err == nil {
		t.Fatal("404 counted as healthy")
	}
}

func TestBuildBinariesEnvAndModuleRoot(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(BinDirEnv, dir)
	if got := BuildBinaries(t); got != dir {
		t.Errorf("BuildBinaries = %q, want %q", got, dir)
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "testenv", "proc.go")); err != nil {
		t.Errorf("ModuleRoot = %q: %v", root, err)
	}
}

func TestHasFlag(t *testing.T) {
	args := []string{"--a", "1", "--data-dir=/x", "--log-levelx"}
	for flag, want := range map[string]bool{"--a": true, "--data-dir": true, "--log-level": false, "--b": false} {
		if got := hasFlag(args, flag); got != want {
			t.Errorf("hasFlag(%q) = %v", flag, got)
		}
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return err != nil && !os.IsNotExist(err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
