package peerflags

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/trust/tlsconf"
)

func TestRegister(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		present []string // flags that must exist
		absent  []string // flags that must not
		usage   map[string]string
		def     map[string]string
	}{
		{
			name:    "plain client",
			spec:    Spec{Role: Client, DataDir: "/d", DataDirHelp: "store"},
			present: []string{"supernode", "daemon-sock", "no-daemon", "data-dir", "upload-listen", "advertise-ip"},
			absent:  []string{"node", "totallimit", "upload-limit", "idc", "rack", "concurrency", "sock", "quota", "download-limit"},
			usage:   map[string]string{"data-dir": "store", "no-daemon": "always use an embedded peer, even if a dfdaemon answers"},
			def:     map[string]string{"data-dir": "/d", "daemon-sock": DefaultSock, "upload-listen": "0.0.0.0:0"},
		},
		{
			name:    "classic client with tuning and a help override",
			spec:    Spec{Role: Client, Classic: true, Tuning: true, Help: map[string]string{"no-daemon": "never a daemon"}},
			present: []string{"supernode", "node", "totallimit", "upload-limit", "idc", "rack", "concurrency"},
			absent:  []string{"sock", "download-limit", "upload-slots", "quota", "ttl"},
			usage:   map[string]string{"no-daemon": "never a daemon", "node": "classic spelling of --supernode"},
			def:     map[string]string{"concurrency": "8", "totallimit": "0"},
		},
		{
			name:    "daemon",
			spec:    Spec{Role: Daemon, DataDir: "/var/d", DataDirHelp: "where pieces are kept"},
			present: []string{"supernode", "sock", "data-dir", "upload-listen", "advertise-ip", "upload-limit", "download-limit", "upload-slots", "concurrency", "idc", "rack", "quota", "ttl"},
			absent:  []string{"daemon-sock", "no-daemon", "node", "totallimit"},
			usage:   map[string]string{"sock": "unix socket of the local API (dfget uses it)"},
			def:     map[string]string{"sock": DefaultSock, "upload-listen": "0.0.0.0:65002", "upload-slots": "8", "ttl": "0s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Options
			f := pflag.NewFlagSet("x", pflag.ContinueOnError)
			o.Register(f, tt.spec)
			for _, n := range tt.present {
				if f.Lookup(n) == nil {
					t.Errorf("--%s missing", n)
				}
			}
			for _, n := range tt.absent {
				if f.Lookup(n) != nil {
					t.Errorf("--%s registered", n)
				}
			}
			for n, u := range tt.usage {
				if fl := f.Lookup(n); fl == nil || fl.Usage != u {
					t.Errorf("--%s usage = %+v, want %q", n, fl, u)
				}
			}
			for n, d := range tt.def {
				if fl := f.Lookup(n); fl == nil || fl.DefValue != d {
					t.Errorf("--%s default = %+v, want %q", n, fl, d)
				}
			}
		})
	}
}

func TestPeerConfig(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		args []string
		want p2p.Config
	}{
		{
			name: "client, classic spellings",
			spec: Spec{Role: Client, Classic: true, Tuning: true, DataDir: "/d"},
			args: []string{"--node", "a:1,b:2", "--node", "c:3", "--totallimit", "2M", "--upload-limit", "1K",
				"--idc", "x", "--rack", "r", "--concurrency", "3", "--advertise-ip", "10.0.0.1"},
			want: p2p.Config{DataDir: "/d", Supernodes: []string{"a:1", "b:2", "c:3"}, UploadListen: "0.0.0.0:0",
				AdvertiseIP: "10.0.0.1", DownloadLimit: 2 << 20, UploadLimit: 1 << 10, IDC: "x", Rack: "r", Concurrency: 3},
		},
		{
			name: "daemon",
			spec: Spec{Role: Daemon, DataDir: "/var/d"},
			args: []string{"--supernode", "s:1", "--upload-slots", "4", "--quota", "1G", "--ttl", "1h", "--download-limit", "5M"},
			want: p2p.Config{DataDir: "/var/d", Supernodes: []string{"s:1"}, UploadListen: "0.0.0.0:65002",
				UploadSlots: 4, Concurrency: 8, Quota: 1 << 30, TTL: time.Hour, DownloadLimit: 5 << 20},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Options
			f := pflag.NewFlagSet("x", pflag.ContinueOnError)
			o.Register(f, tt.spec)
			if err := f.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := o.PeerConfig(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("PeerConfig =\n%+v, want\n%+v", got, tt.want)
			}
		})
	}
}

// fakeDaemon answers the health check on a unix socket, as dfdaemon does.
func fakeDaemon(t *testing.T) string {
	sock := filepath.Join(t.TempDir(), "d.sock")
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
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestOpen(t *testing.T) {
	live := fakeDaemon(t)
	dead := filepath.Join(t.TempDir(), "nobody.sock")
	tests := []struct {
		name       string
		args       []string
		viaDaemon  bool
		warnNoneOn string // the warning that no daemon answers
	}{
		{"daemon answers", []string{"--daemon-sock", live}, true, ""},
		{"--no-daemon", []string{"--daemon-sock", live, "--no-daemon"}, false, ""},
		{"nobody on the chosen socket", []string{"--daemon-sock", dead}, false, dead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Options
			f := pflag.NewFlagSet("x", pflag.ContinueOnError)
			o.Register(f, Spec{Role: Client, DataDir: t.TempDir()})
			args := append([]string{"--upload-listen", "127.0.0.1:0"}, tt.args...)
			if err := f.Parse(args); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			log := logrus.New()
			log.SetOutput(&logs)
			src, err := o.Open(context.Background(), log)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(src.Close)
			if src.ViaDaemon() != tt.viaDaemon || (src.Peer() == nil) != tt.viaDaemon {
				t.Fatalf("ViaDaemon = %v, Peer = %v; want via daemon %v", src.ViaDaemon(), src.Peer(), tt.viaDaemon)
			}
			if tt.viaDaemon && src.String() != "dfdaemon at "+live {
				t.Errorf("String = %q", src.String())
			}
			if !tt.viaDaemon && src.String() != "embedded peer" {
				t.Errorf("String = %q", src.String())
			}
			warned := strings.Contains(logs.String(), "no dfdaemon answers on "+tt.warnNoneOn)
			if warned != (tt.warnNoneOn != "") {
				t.Errorf("warning logged = %v, want %v; logs:\n%s", warned, tt.warnNoneOn != "", logs.String())
			}
		})
	}
}

// TestTrustFlags: the cluster token comes from --cluster-token-file, else
// from the file $DAMSELFLY_CLUSTER_TOKEN_FILE names; the TLS and origin
// flags reach the p2p.Config.
func TestTrustFlags(t *testing.T) {
	dir := t.TempDir()
	flagFile, envFile := filepath.Join(dir, "flag"), filepath.Join(dir, "env")
	os.WriteFile(flagFile, []byte("token-from-the-flag-file-0123456789\n"), 0o600)
	os.WriteFile(envFile, []byte("token-from-the-env-file-0123456789\n"), 0o600)
	tests := []struct {
		name, env string
		args      []string
		wantToken string // "" = authentication off
	}{
		{"neither", "", nil, ""},
		{"env", envFile, nil, "token-from-the-env-file-0123456789"},
		{"flag wins", envFile, []string{"--cluster-token-file", flagFile}, "token-from-the-flag-file-0123456789"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DAMSELFLY_CLUSTER_TOKEN_FILE", tc.env)
			var o Options
			f := pflag.NewFlagSet("x", pflag.ContinueOnError)
			o.Register(f, Spec{Role: Client})
			args := append([]string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-ca", "ca.pem", "--allow-origin", "10.1.2.3:80"}, tc.args...)
			if err := f.Parse(args); err != nil {
				t.Fatal(err)
			}
			cfg, err := o.PeerConfig(nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.ClusterToken; got.IsZero() != (tc.wantToken == "") || (!got.IsZero() && got.Reveal() != tc.wantToken) {
				t.Errorf("cluster token set=%v, want %q", !got.IsZero(), tc.wantToken)
			}
			if cfg.TLS != (tlsconf.Options{CertFile: "c.pem", KeyFile: "k.pem", CAFile: "ca.pem"}) {
				t.Errorf("TLS %+v", cfg.TLS)
			}
			if cfg.Egress == nil {
				t.Error("--allow-origin gave no policy")
			}
		})
	}
}
