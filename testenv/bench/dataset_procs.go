package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// dsProc is a mount process of the dataset scenario: unlike testenv.Start,
// it runs with an environment of its own (the store's credentials go to
// the process that uses them, never to its command line or log).
type dsProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	// slowExit is set when the process did not exit within 15 s of being
	// asked to and was killed.
	slowExit bool
}

// dsSpawner starts children from one goroutine locked to its thread, so
// that Pdeathsig (which fires when the forking thread exits) only fires
// when dfbench dies.
var dsSpawner struct {
	once sync.Once
	reqs chan func()
}

func dsSpawn(cmd *exec.Cmd) error {
	dsSpawner.once.Do(func() {
		dsSpawner.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must not exit
			for f := range dsSpawner.reqs {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	dsSpawner.reqs <- func() { errc <- cmd.Start() }
	return <-errc
}

// dsStart runs path with args and extra environment variables added to
// dfbench's, in its own process group, its output to a log file in a
// temporary directory of tb; tb's cleanup kills the group.
func dsStart(tb testenv.TB, env []string, path string, args ...string) (*dsProc, error) {
	logf, err := os.CreateTemp(tb.TempDir(), filepath.Base(path)+"-*.log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "# %s %s\n", path, strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	cmd.Env = append(dsInheritedEnv(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := dsSpawn(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	p := &dsProc{name: filepath.Base(path), cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(p.kill)
	return p, nil
}

// dsInheritedEnv is dfbench's environment without the variables that
// configure S3 clients (AWS_*, AWSACCESSKEYID, RCLONE_*): every mount gets
// the store's settings from the scenario only (an AWS_CA_BUNDLE meant for
// other stores, for one, makes rclone refuse to start).
func dsInheritedEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS") || strings.HasPrefix(k, "RCLONE_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (p *dsProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process group and waits up to 10 s for the
// process to be reaped.
func (p *dsProc) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// wait waits up to d for the process to exit and reports whether it did.
func (p *dsProc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// tail returns the last n lines of the process' log.
func (p *dsProc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFUSE waits until a live FUSE file system is mounted at mnt, the
// process exits, ctx ends or a minute passes.
func waitFUSE(ctx context.Context, p *dsProc, mnt string) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if typ, ok := fusefs.MountedType(mnt); ok && strings.HasPrefix(typ, "fuse") && fusefs.Alive(mnt) {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before mounting:\n%s", p.name, p.tail(15))
		}
		if !sleepCtx(ctx, 10*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("%s did not mount within a minute:\n%s", p.name, p.tail(15))
}

// unmountFUSE unmounts mnt (umount(2), as root; the FUSE process then
// exits) or, for dfmount, asks the process to (SIGTERM); a process still
// running after 15 s is killed and the mount detached.
func unmountFUSE(p *dsProc, mnt string, term bool) {
	if term {
		p.cmd.Process.Signal(syscall.SIGTERM)
	} else if err := syscall.Unmount(mnt, 0); err != nil {
		exec.Command("fusermount", "-u", mnt).Run()
	}
	if !p.wait(15 * time.Second) {
		p.slowExit = true
		p.kill()
	}
	detachMount(mnt)
}

// dropCaches writes back dirty pages and empties the page cache, dentries
// and inodes (root only).
func dropCaches() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		return fmt.Errorf("drop_caches: %w", err)
	}
	return nil
}

// errPrefixNotBuilt marks a dfmount that refused an s3 prefix.
var errPrefixNotBuilt = errors.New("n/a (prefix mounts not built)")

// versionLine returns the first line of a command's combined output, "" if
// it fails.
func versionLine(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return ""
	}
	l, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(l)
}

// helpHas reports whether bin's --help names flag.
func helpHas(bin, flag string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	for _, f := range strings.Fields(string(out)) {
		if strings.TrimRight(f, ",=") == flag {
			return true
		}
	}
	return false
}

// counted is what the store proxy counted so far: body bytes and answers.
func (r *dsRun) counted() (int64, int64) {
	c := r.proxy.Counts()
	return c.Bytes(), c.Answers
}
