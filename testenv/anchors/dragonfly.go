package anchors

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// dragonflyConfig is the supernode's --config: its rate limits removed
// (linkLimit caps each piece download at 20 MB/s by default, maxBandwidth
// the whole supernode at 200 MB/s less a 20 MB/s reserve), everything else
// at its defaults.
const dragonflyConfig = `base:
  listenPort: {{.Port}}
  downloadPort: {{.DownloadPort}}
  homeDir: {{.Home}}
  advertiseIP: 127.0.0.1
  linkLimit: 100G
  systemReservedBandwidth: 0B
  maxBandwidth: 100G
`

// dragonflyNginx serves the supernode's repository on its download port, as
// Dragonfly's own hack/supernode-nginx.conf does, with every path under dir.
// Its workers run as the invoking user (a root master would otherwise drop
// them to nobody, who cannot enter the private temporary directories; nginx
// ignores the directive when not run as root).
const dragonflyNginx = `worker_processes 2;
user {{.User}};
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/nginx-error.log;
events { worker_connections 4096; }
http {
  sendfile on;
  tcp_nopush on;
  access_log off;
  keepalive_timeout 5;
  client_body_temp_path {{.Dir}}/client_body;
  proxy_temp_path {{.Dir}}/proxy;
  fastcgi_temp_path {{.Dir}}/fastcgi;
  uwsgi_temp_path {{.Dir}}/uwsgi;
  scgi_temp_path {{.Dir}}/scgi;
  server {
    listen 127.0.0.1:{{.DownloadPort}};
    location / { root {{.Home}}/repo; }
  }
}
`

// DragonflySupernode is a running Dragonfly supernode and the nginx that
// serves its download port.
type DragonflySupernode struct {
	// Addr is the supernode's 127.0.0.1:port, as dfget's --node takes it.
	Addr string
	// Home is the supernode's home directory (its cache under repo/).
	Home string
	// Supernode and Nginx are the processes.
	Supernode, Nginx *testenv.Proc

	binDir string
	procs  procs
}

// StartDragonfly starts nginx and a Dragonfly supernode with a fresh home
// directory (a cold cache) from t.TempDir(), and waits until both listen.
// The processes end with t's cleanup or Stop.
func StartDragonfly(ctx context.Context, t testenv.TB, binDir string) (*DragonflySupernode, error) {
	if err := binDirOK(Dragonfly, binDir); err != nil {
		return nil, err
	}
	nginx, err := Nginx()
	if err != nil {
		return nil, err
	}
	d := &DragonflySupernode{Home: t.TempDir(), binDir: binDir}
	if err := os.MkdirAll(filepath.Join(d.Home, "repo"), 0o755); err != nil {
		return nil, err
	}
	conf := struct {
		Port, DownloadPort int
		Home, Dir, User    string
	}{Home: d.Home, Dir: t.TempDir(), User: currentUser()}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	conf.Port, conf.DownloadPort = ports[0], ports[1]
	d.Addr = loopback(conf.Port)
	ngConf, err := render(conf.Dir, "nginx.conf", dragonflyNginx, conf)
	if err != nil {
		return nil, err
	}
	snConf, err := render(conf.Dir, "supernode.yml", dragonflyConfig, conf)
	if err != nil {
		return nil, err
	}
	d.Nginx = testenv.Start(t, "", nginx, "-e", filepath.Join(conf.Dir, "nginx-error.log"), "-p", conf.Dir, "-c", ngConf, "-g", "daemon off;")
	d.procs = append(d.procs, d.Nginx)
	d.Supernode = testenv.Start(t, binDir, "supernode", "--config", snConf,
		"--port", fmt.Sprint(conf.Port), "--download-port", fmt.Sprint(conf.DownloadPort),
		"--home-dir", d.Home, "--advertise-ip", "127.0.0.1")
	d.procs = append(d.procs, d.Supernode)
	if err := waitTCP(ctx, loopback(conf.DownloadPort), d.Nginx); err != nil {
		d.Stop()
		return nil, fmt.Errorf("dragonfly nginx: %w", err)
	}
	if err := waitTCP(ctx, d.Addr, d.Supernode); err != nil {
		d.Stop()
		return nil, fmt.Errorf("dragonfly supernode: %w (log %s)", err, filepath.Join(d.Home, "logs", "app.log"))
	}
	return d, nil
}

// Dfget starts, and does not wait for, one Dragonfly dfget of url into out
// with its own home directory (so its own peer server: every client is a
// separate peer), its rate limits lifted. dfget leaves its peer server
// ("dfget server") running after it exits, in its process group, which
// the returned Proc's Kill9 (and t's cleanup) end.
func (d *DragonflySupernode) Dfget(t testenv.TB, url, out string) *testenv.Proc {
	return testenv.Start(t, d.binDir, "dfget", "-u", url, "-o", out, "--node", d.Addr,
		"--home", t.TempDir(), "--ip", "127.0.0.1", "--locallimit", "10G", "--totallimit", "10G",
		"--alivetime", "2m")
}

// currentUser is the name of the user running this process ("root" when
// it cannot be told).
func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "root"
}

// Stop kills the supernode and nginx.
func (d *DragonflySupernode) Stop() { d.procs.stop() }
