package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/trust/tlsconf"
	"github.com/damselfly-p2p/damselfly/wire"
)

// dfctl runs the command with args and returns its output.
func dfctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// pki makes a CA in dir with dfctl cert ca and one certificate per usage
// with dfctl cert issue; it returns the directory.
func pki(t *testing.T, dir string) string {
	t.Helper()
	if out, err := dfctl(t, "cert", "ca", "--out", dir); err != nil {
		t.Fatalf("cert ca: %v\n%s", err, out)
	}
	for _, usage := range []string{"server", "client", "both"} {
		if out, err := dfctl(t, "cert", "issue", "--ca", filepath.Join(dir, "ca.crt"), "--ca-key", filepath.Join(dir, "ca.key"),
			"--name", usage, "--host", "127.0.0.1", "--usage", usage, "--out", dir); err != nil {
			t.Fatalf("cert issue %s: %v\n%s", usage, err, out)
		}
	}
	return dir
}

func files(dir, name string) tlsconf.Options {
	return tlsconf.Options{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key"), CAFile: filepath.Join(dir, "ca.crt")}
}

// TestCertMutualTLS: certificates made by dfctl cert work for a mutual TLS
// handshake, and the server refuses clients without a certificate of this
// CA or with a server-only one.
func TestCertMutualTLS(t *testing.T) {
	dir := pki(t, t.TempDir())
	other := pki(t, t.TempDir())
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key: %v, %v; want mode 0600", fi.Mode(), err)
	}

	for _, server := range []string{"server", "both"} {
		srvCfg, err := files(dir, server).ServerConfig()
		if err != nil {
			t.Fatal(err)
		}
		srv := startTLS(t, srvCfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))

		tests := []struct {
			name   string
			client tlsconf.Options
			ok     bool
		}{
			{"client cert", files(dir, "client"), true},
			{"both cert", files(dir, "both"), true},
			{"no client cert", tlsconf.Options{CAFile: filepath.Join(dir, "ca.crt")}, false},
			{"server-only cert as client", files(dir, "server"), false},
			{"cert of another CA", tlsconf.Options{CertFile: filepath.Join(other, "client.crt"), KeyFile: filepath.Join(other, "client.key"), CAFile: filepath.Join(dir, "ca.crt")}, false},
			{"server not trusted", files(other, "client"), false},
		}
		for _, tc := range tests {
			t.Run(server+"/"+tc.name, func(t *testing.T) {
				cfg, err := tc.client.ClientConfig()
				if err != nil {
					t.Fatal(err)
				}
				hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
				defer hc.CloseIdleConnections()
				resp, err := hc.Get(srv.URL)
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(body) != "ok" {
						err = io.ErrUnexpectedEOF
					}
				}
				if (err == nil) != tc.ok {
					t.Fatalf("GET: %v, want ok=%v", err, tc.ok)
				}
			})
		}
	}
}

func TestCertFlagErrors(t *testing.T) {
	dir := pki(t, t.TempDir())
	ca, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"ca without out", []string{"cert", "ca"}, "--out"},
		{"ca over an existing one", []string{"cert", "ca", "--out", dir}, "ca"},
		{"issue without ca", []string{"cert", "issue", "--name", "x", "--host", "h", "--out", dir}, "--ca"},
		{"bad usage", []string{"cert", "issue", "--ca", ca, "--ca-key", key, "--name", "x", "--host", "h", "--usage", "peer", "--out", dir}, "--usage"},
		{"server without host", []string{"cert", "issue", "--ca", ca, "--ca-key", key, "--name", "x", "--usage", "server", "--out", dir}, "--host"},
		{"existing name", []string{"cert", "issue", "--ca", ca, "--ca-key", key, "--name", "client", "--usage", "client", "--out", dir}, "client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := dfctl(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one naming %q (output %s)", err, tc.want, out)
			}
		})
	}
}

// TestStatusCredentials runs dfctl status against a fake supernode over
// mutual TLS that wants the admin token: only the right token file gets
// the status.
func TestStatusCredentials(t *testing.T) {
	dir := pki(t, t.TempDir())
	tokens := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(tokens, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	admin := write("admin", "admin-token-0123456789abcdef")
	cluster := write("cluster", "cluster-token-0123456789abcdef")
	srvCfg, err := files(dir, "both").ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	srv := startTLS(t, srvCfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer admin-token-0123456789abcdef" {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(wire.ErrorResponse{Code: wire.CodeUnauthorized, Message: "unauthorized"})
			return
		}
		switch r.URL.Path {
		case "/api/v1/status":
			json.NewEncoder(w).Encode(wire.Status{Supernode: "fake-supernode"})
		case "/api/v1/preheats":
			io.WriteString(w, "[]")
		default:
			http.NotFound(w, r)
		}
	}))
	addr := strings.TrimPrefix(srv.URL, "https://")
	tlsArgs := []string{"--tls-cert", filepath.Join(dir, "client.crt"), "--tls-key", filepath.Join(dir, "client.key"), "--tls-ca", filepath.Join(dir, "ca.crt")}

	tests := []struct {
		name string
		args []string
		env  string
		ok   bool
	}{
		{"admin token", append([]string{"--admin-token-file", admin}, tlsArgs...), "", true},
		{"admin token from the environment", tlsArgs, admin, true},
		{"cluster token only", append([]string{"--cluster-token-file", cluster}, tlsArgs...), "", false},
		{"no token", tlsArgs, "", false},
		{"admin token without a client certificate", []string{"--admin-token-file", admin, "--tls-ca", filepath.Join(dir, "ca.crt")}, "", false},
		{"admin token over plain HTTP", []string{"--admin-token-file", admin}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DAMSELFLY_ADMIN_TOKEN_FILE", tc.env)
			t.Setenv("DAMSELFLY_CLUSTER_TOKEN_FILE", "")
			out, err := dfctl(t, append([]string{"status", "--supernode", addr}, tc.args...)...)
			if (err == nil) != tc.ok {
				t.Fatalf("status: %v, want ok=%v; output %s", err, tc.ok, out)
			}
			if tc.ok && !strings.Contains(out, "fake-supernode") {
				t.Errorf("output %q lacks the status", out)
			}
			if strings.Contains(out+errText(err), "0123456789abcdef") {
				t.Error("a token shows in the output")
			}
		})
	}
}

// startTLS serves h over TLS with cfg as is (httptest's StartTLS would
// put its own certificate first).
func startTLS(t *testing.T, cfg *tls.Config, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = tls.NewListener(srv.Listener, cfg)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	srv.URL = strings.Replace(srv.URL, "http://", "https://", 1)
	t.Cleanup(srv.Close)
	return srv
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
