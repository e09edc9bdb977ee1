package anchors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// ReadyTimeout bounds how long a started component may take to listen.
var ReadyTimeout = 30 * time.Second

// Nginx returns the nginx binary (nginx-light in Debian), or an error
// naming the package to install.
func Nginx() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", errors.New("nginx not installed (Debian package nginx-light)")
}

// RedisServer returns the redis-server binary, or an error naming the
// package to install.
func RedisServer() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server", nil
	}
	return "", errors.New("redis-server not installed (Debian package redis-server)")
}

// waitTCP waits until addr accepts TCP connections, p exits, ctx ends or
// ReadyTimeout passes.
func waitTCP(ctx context.Context, addr string, p *testenv.Proc) error {
	deadline := time.Now().Add(ReadyTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited before listening on %s: %s", p.Name, addr, p.Tail(15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %v: %w", addr, ReadyTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1 a
// moment ago: all n listeners are open at once, so that the kernel cannot
// hand the same port out twice (as consecutive testenv.FreePort calls may).
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserve a port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// loopback returns 127.0.0.1:port.
func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// render executes a text/template into dir/name and returns the path.
func render(dir, name, tmpl string, data any) (string, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("parse %s template: %w", name, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return path, nil
}

// procs is a set of processes stopped together.
type procs []*testenv.Proc

// stop kills every process group (SIGKILL), last started first.
func (ps procs) stop() {
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].Kill9()
	}
}

// binDirsOK checks that every binary of a is in dir.
func binDirOK(a Anchor, dir string) error {
	for name := range a.Binaries {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("%s: %w", a.Name, err)
		}
	}
	return nil
}
