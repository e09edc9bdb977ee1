package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki is a CA with server and client certificates written to a directory.
type pki struct {
	dir             string
	caCert, caKey   []byte
	ca              Options // CAFile only
	server, client  Options // cert, key and CA
	serverOnlyCert  Options // a server-usage certificate offered as a client cert
	otherCAClient   Options // client certificate from another CA, trusting ours
	clientNoCert    Options // trusts our CA, presents nothing
	clientOtherRoot Options // presents our client cert but trusts another CA
}

func write(t *testing.T, dir, name string, cert, key []byte) (string, string) {
	t.Helper()
	c, k, err := WriteFiles(dir, name, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func gen(t *testing.T, caCert, caKey []byte, cn string, hosts []string, u Usage) ([]byte, []byte) {
	t.Helper()
	c, k, err := GenerateCert(caCert, caKey, cn, hosts, time.Hour, u)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	if p.caCert, p.caKey, err = GenerateCA("test CA", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey, err := GenerateCA("other CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile, _ := write(t, p.dir, "ca", p.caCert, p.caKey)
	otherCAFile, _ := write(t, p.dir, "other-ca", otherCert, otherKey)
	p.ca = Options{CAFile: caFile}

	sc, sk := gen(t, p.caCert, p.caKey, "supernode", []string{"127.0.0.1", "localhost"}, UsageServer)
	scf, skf := write(t, p.dir, "server", sc, sk)
	p.server = Options{CertFile: scf, KeyFile: skf, CAFile: caFile}
	p.serverOnlyCert = Options{CertFile: scf, KeyFile: skf, CAFile: caFile}

	cc, ck := gen(t, p.caCert, p.caKey, "peer-1", nil, UsageClient)
	ccf, ckf := write(t, p.dir, "client", cc, ck)
	p.client = Options{CertFile: ccf, KeyFile: ckf, CAFile: caFile}
	p.clientNoCert = Options{CAFile: caFile}
	p.clientOtherRoot = Options{CertFile: ccf, KeyFile: ckf, CAFile: otherCAFile}

	oc, ok := gen(t, otherCert, otherKey, "intruder", nil, UsageClient)
	ocf, okf := write(t, p.dir, "intruder", oc, ok)
	p.otherCAClient = Options{CertFile: ocf, KeyFile: okf, CAFile: caFile}
	return p
}

// serveTLS runs an HTTPS server with cfg on 127.0.0.1 that answers with the
// common name of the client certificate, and returns its URL.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.TLS.PeerCertificates) > 0 {
				io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
			}
		}),
		// The refusal tests provoke handshake errors on purpose.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

// get makes one request on a fresh connection with a client built from o.
func get(t *testing.T, o Options, url string) (body string, serverCN string, err error) {
	t.Helper()
	cfg, err := o.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.TLS.PeerCertificates[0].Subject.CommonName, err
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	cfg, err := p.server.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("ClientAuth = %v, MinVersion = %x", cfg.ClientAuth, cfg.MinVersion)
	}
	url := serveTLS(t, cfg)
	tests := []struct {
		name    string
		client  Options
		url     string
		wantErr string // substring of the client's error; "" for success
	}{
		{"client with cert", p.client, url, ""},
		{"client by host name", p.client, strings.Replace(url, "127.0.0.1", "localhost", 1), ""},
		{"client without cert", p.clientNoCert, url, "certificate required"},
		{"cert from another CA", p.otherCAClient, url, "unknown certificate authority"},
		{"server-only cert as client cert", p.serverOnlyCert, url, "bad certificate"},
		{"client trusting another CA", p.clientOtherRoot, url, "certificate signed by unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, serverCN, err := get(t, tc.client, tc.url)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if body != "peer-1" || serverCN != "supernode" {
				t.Errorf("server saw client %q, client saw server %q", body, serverCN)
			}
		})
	}
}

func TestServerWithoutCA(t *testing.T) {
	p := newPKI(t)
	o := p.server
	o.CAFile = ""
	cfg, err := o.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.NoClientCert {
		t.Fatalf("ClientAuth = %v without CA", cfg.ClientAuth)
	}
	body, _, err := get(t, p.clientNoCert, serveTLS(t, cfg))
	if err != nil || body != "" {
		t.Fatalf("plain TLS client: body %q, err %v", body, err)
	}
}

func TestCertificateReload(t *testing.T) {
	p := newPKI(t)
	cfg, err := p.server.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	url := serveTLS(t, cfg)
	if _, cn, err := get(t, p.client, url); err != nil || cn != "supernode" {
		t.Fatalf("before rotation: server %q, err %v", cn, err)
	}
	c, k := gen(t, p.caCert, p.caKey, "supernode-rotated", []string{"127.0.0.1"}, UsageServer)
	for _, f := range []struct {
		path string
		data []byte
	}{{p.server.CertFile, c}, {p.server.KeyFile, k}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		// Make the change visible whatever the file system's time resolution.
		future := time.Now().Add(time.Hour)
		if err := os.Chtimes(f.path, future, future); err != nil {
			t.Fatal(err)
		}
	}
	if _, cn, err := get(t, p.client, url); err != nil || cn != "supernode-rotated" {
		t.Fatalf("after rotation: server %q, err %v", cn, err)
	}
	// A broken replacement keeps the last good pair in service.
	if err := os.WriteFile(p.server.KeyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, cn, err := get(t, p.client, url); err != nil || cn != "supernode-rotated" {
		t.Fatalf("after broken rotation: server %q, err %v", cn, err)
	}
}

func TestConfigErrors(t *testing.T) {
	p := newPKI(t)
	missing := filepath.Join(p.dir, "missing.pem")
	notPEM := filepath.Join(p.dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		o        Options
		server   bool
		wantText []string // substrings the error must contain
		wantIs   error
	}{
		{"nothing configured", Options{}, true, nil, ErrNotEnabled},
		{"nothing configured client", Options{}, false, nil, ErrNotEnabled},
		{"cert without key", Options{CertFile: p.server.CertFile}, true, []string{"--tls-key"}, nil},
		{"key without cert", Options{KeyFile: p.server.KeyFile}, false, []string{"--tls-cert"}, nil},
		{"server needs cert", Options{CAFile: p.ca.CAFile}, true, []string{"--tls-cert"}, nil},
		{"missing cert", Options{CertFile: missing, KeyFile: p.server.KeyFile}, true, []string{missing}, os.ErrNotExist},
		{"missing key", Options{CertFile: p.server.CertFile, KeyFile: missing}, false, []string{missing}, os.ErrNotExist},
		{"missing CA server", Options{CertFile: p.server.CertFile, KeyFile: p.server.KeyFile, CAFile: missing}, true, []string{missing}, os.ErrNotExist},
		{"missing CA client", Options{CAFile: missing}, false, []string{missing}, os.ErrNotExist},
		{"CA not PEM", Options{CAFile: notPEM}, false, []string{notPEM, "no PEM certificate"}, nil},
		{"key of another cert", Options{CertFile: p.server.CertFile, KeyFile: p.client.KeyFile}, true, []string{p.server.CertFile, p.client.KeyFile}, nil},
		{"cert not PEM", Options{CertFile: notPEM, KeyFile: p.server.KeyFile}, false, []string{notPEM}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cfg *tls.Config
			var err error
			if tc.server {
				cfg, err = tc.o.ServerConfig()
			} else {
				cfg, err = tc.o.ClientConfig()
			}
			if err == nil || cfg != nil {
				t.Fatalf("got config %v, err %v; want an error", cfg != nil, err)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want %v", err, tc.wantIs)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %v, want it to contain %q", err, s)
				}
			}
		})
	}
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGenerateCert(t *testing.T) {
	caCert, caKey, err := GenerateCA("ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca := parseCert(t, caCert)
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("CA: IsCA %v, algorithm %v", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	certPEM, _, err := GenerateCert(caCert, caKey, "node", []string{"10.0.0.1", "node.example", "::1"}, 100*time.Hour, UsageBoth)
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, certPEM)
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) || len(c.DNSNames) != 1 || c.DNSNames[0] != "node.example" {
		t.Errorf("SANs: IPs %v, DNS %v", c.IPAddresses, c.DNSNames)
	}
	if len(c.ExtKeyUsage) != 2 || c.IsCA {
		t.Errorf("ExtKeyUsage %v, IsCA %v", c.ExtKeyUsage, c.IsCA)
	}
	if c.NotAfter.After(ca.NotAfter) {
		t.Errorf("leaf expires %v after its CA %v", c.NotAfter, ca.NotAfter)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: "node.example", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify against CA: %v", err)
	}

	otherCert, otherKey, err := GenerateCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		caCert, caKey  []byte
		hosts          []string
		validity       time.Duration
		usage          Usage
		wantErrContain string
	}{
		{"server without hosts", caCert, caKey, nil, time.Hour, UsageServer, "at least one host"},
		{"both without hosts", caCert, caKey, nil, time.Hour, UsageBoth, "at least one host"},
		{"empty host", caCert, caKey, []string{" "}, time.Hour, UsageServer, "empty host"},
		{"bad usage", caCert, caKey, []string{"h"}, time.Hour, Usage(7), "unknown certificate usage"},
		{"zero validity", caCert, caKey, []string{"h"}, 0, UsageServer, "positive validity"},
		{"leaf as CA", certPEM, caKey, []string{"h"}, time.Hour, UsageServer, "not a CA"},
		{"mismatched CA key", caCert, otherKey, []string{"h"}, time.Hour, UsageServer, "does not belong"},
		{"garbage CA", []byte("x"), caKey, []string{"h"}, time.Hour, UsageServer, "no PEM CERTIFICATE"},
		{"garbage key", otherCert, []byte("x"), []string{"h"}, time.Hour, UsageServer, "CA key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, k, err := GenerateCert(tc.caCert, tc.caKey, "x", tc.hosts, tc.validity, tc.usage)
			if err == nil || !strings.Contains(err.Error(), tc.wantErrContain) || c != nil || k != nil {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErrContain)
			}
		})
	}
}

func TestParseUsage(t *testing.T) {
	for _, u := range []Usage{UsageServer, UsageClient, UsageBoth} {
		if got, err := ParseUsage(strings.ToUpper(u.String())); err != nil || got != u {
			t.Errorf("ParseUsage(%q) = %v, %v", u, got, err)
		}
	}
	if _, err := ParseUsage("peer"); err == nil {
		t.Error("ParseUsage(peer): want an error")
	}
}

func TestWriteFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	certPath, keyPath, err := WriteFiles(dir, "node", []byte("CERT"), []byte("KEY"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path, data string
		mode       os.FileMode
	}{{certPath, "CERT", 0o644}, {keyPath, "KEY", 0o600}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %o, want %o", f.path, fi.Mode().Perm(), f.mode)
		}
		if b, _ := os.ReadFile(f.path); string(b) != f.data {
			t.Errorf("%s: content %q", f.path, b)
		}
	}
	if filepath.Base(certPath) != "node.crt" || filepath.Base(keyPath) != "node.key" {
		t.Errorf("paths %s, %s", certPath, keyPath)
	}
	// No overwrite, and the existing key is untouched.
	if _, _, err := WriteFiles(dir, "node", []byte("NEW"), []byte("NEWKEY")); !errors.Is(err, os.ErrExist) {
		t.Errorf("second write: err = %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(keyPath); string(b) != "KEY" {
		t.Errorf("key overwritten: %q", b)
	}
	// A cert that exists without its key: the new key must not stay behind.
	if err := os.WriteFile(filepath.Join(dir, "half.crt"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := WriteFiles(dir, "half", []byte("C"), []byte("K")); err == nil {
		t.Error("write over existing cert: want an error")
	}
	if _, err := os.Stat(filepath.Join(dir, "half.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half.key left behind: %v", err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", `a\b`} {
		if _, _, err := WriteFiles(dir, bad, nil, nil); err == nil {
			t.Errorf("name %q: want an error", bad)
		}
	}
}
