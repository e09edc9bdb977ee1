package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Binaries of Debian's containerd package.
const (
	ContainerdBin = "/usr/bin/containerd"
	CtrBin        = "/usr/bin/ctr"
)

// ContainerdOptions configures StartContainerd.
type ContainerdOptions struct {
	// ExtraConfig is TOML appended to the generated config (e.g. a proxy
	// snapshotter plugin).
	ExtraConfig string
}

// Containerd is a private containerd: its own root, state, socket and
// namespace, so that it neither sees nor disturbs a system one. Cleanup
// kills its containers and shims, unmounts what it mounted and removes
// its directories, even when the test failed.
type Containerd struct {
	Proc *Proc
	// Sock is the gRPC socket (ctr -a).
	Sock string
	// Dir holds root/, state/ and the config; Namespace is the one ctr uses.
	Dir, Root, State, Namespace string
}

// StartContainerd starts containerd with the CRI plugin disabled and
// waits until `ctr version` answers.
func StartContainerd(t TB, opts ContainerdOptions) *Containerd {
	t.Helper()
	for _, bin := range []string{ContainerdBin, CtrBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("testenv: %s not found (apt-get install containerd runc): %v", bin, err)
		}
	}
	// Short paths: unix sockets and overlay mount options have length limits.
	dir := shortTempDir(t)
	b := make([]byte, 4)
	rand.Read(b)
	c := &Containerd{Dir: dir, Sock: filepath.Join(dir, "c.sock"), Root: filepath.Join(dir, "root"),
		State: filepath.Join(dir, "state"), Namespace: "df-" + hex.EncodeToString(b)}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
%s`, c.Root, c.State, c.Sock, c.Sock+".ttrpc", filepath.Join(dir, "opt"), opts.ExtraConfig)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatalf("testenv: containerd config: %v", err)
	}
	c.Proc = Start(t, "", ContainerdBin, "--config", cfgPath, "--log-level", "info")
	t.Cleanup(func() { c.teardown(t) })
	deadline := time.Now().Add(HealthTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := exec.CommandContext(ctx, CtrBin, "-a", c.Sock, "version").Run()
		cancel()
		if err == nil {
			break
		}
		if c.Proc.Exited() || time.Now().After(deadline) {
			t.Fatalf("testenv: containerd did not come up: %v\n%s", err, c.Proc.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

// Ctr runs `ctr -a SOCK -n NS args...` and returns its combined output.
func (c *Containerd) Ctr(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{"-a", c.Sock, "-n", c.Namespace}, args...)
	out, err := exec.CommandContext(ctx, CtrBin, full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// Pull runs `ctr image pull --plain-http --hosts-dir HOSTSDIR REF` (no
// hosts dir if hostsDir is empty) and fails the test if it fails.
func (c *Containerd) Pull(t TB, ref, hostsDir string, extra ...string) string {
	t.Helper()
	args := []string{"image", "pull", "--plain-http"}
	if hostsDir != "" {
		args = append(args, "--hosts-dir", hostsDir)
	}
	args = append(append(args, extra...), ref)
	out, err := c.Ctr(5*time.Minute, args...)
	if err != nil {
		t.Fatalf("testenv: %v\n%s", err, lastLines(out, 30))
	}
	return out
}

// Run runs `ctr run --rm REF ID CMD...` and returns its output, failing
// the test if it fails.
func (c *Containerd) Run(t TB, ref, id string, cmd ...string) string {
	t.Helper()
	out, err := c.Ctr(5*time.Minute, append([]string{"run", "--rm", ref, id}, cmd...)...)
	if err != nil {
		t.Fatalf("testenv: %v\n%s", err, lastLines(out, 30))
	}
	return out
}

// MirrorHostsDir writes a containerd hosts directory in which registry
// (host:port) is pulled through the mirror at mirrorAddr (host:port, plain
// HTTP), and returns it for Pull's hostsDir.
func MirrorHostsDir(t TB, registry, mirrorAddr string) string {
	t.Helper()
	dir := t.TempDir()
	hostDir := filepath.Join(dir, registry)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	toml := fmt.Sprintf(`server = "http://%s"

[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, registry, mirrorAddr)
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dir
}

// teardown kills the namespace's tasks, then containerd, then the shims it
// started (by pid: they are in their own process groups), and unmounts
// everything below Dir.
func (c *Containerd) teardown(t TB) {
	if !c.Proc.Exited() {
		if out, err := c.Ctr(10*time.Second, "tasks", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				c.Ctr(10*time.Second, "tasks", "kill", "-s", "SIGKILL", id)
				c.Ctr(10*time.Second, "tasks", "delete", "-f", id)
			}
		}
		if out, err := c.Ctr(10*time.Second, "containers", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				c.Ctr(10*time.Second, "containers", "delete", id)
			}
		}
	}
	c.Proc.Kill9()
	for _, pid := range pidsWithArg(c.Sock) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, mp := range mountsUnder(c.Dir) {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			t.Logf("testenv: unmount %s: %v", mp, err)
		}
	}
	// runc's state root of our namespace (empty once the tasks are gone).
	os.Remove(filepath.Join("/run/containerd/runc", c.Namespace))
	removeCgroups(c.Namespace)
}

// removeCgroups removes the (empty, once its tasks are dead) cgroups runc
// made for a namespace, deepest first, in every hierarchy (v1 and v2).
func removeCgroups(ns string) {
	roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
	roots = append(roots, filepath.Join("/sys/fs/cgroup", ns))
	for _, root := range roots {
		var dirs []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			syscall.Rmdir(dirs[i])
		}
	}
}

// pidsWithArg returns the processes whose command line contains arg (the
// containerd shims started for our socket).
func pidsWithArg(arg string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(cmdline, []byte("containerd-shim")) && bytes.Contains(cmdline, []byte(arg)) {
			out = append(out, pid)
		}
	}
	return out
}

// mountsUnder returns mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
