package testenv

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/damselfly-p2p/damselfly/trust/tlsconf"
)

// AllowOrigins returns `--allow-origin ADDR` for each addr (host:port of a
// loopback origin, registry or other test server), for the extra arguments
// of StartSupernode, and of dfdaemon, dfget or dfmount where a remote
// manifest names the origin. Naming each exact host:port keeps every other
// loopback port, the supernode's own among them, refused.
func AllowOrigins(addrs ...string) []string {
	var args []string
	for _, a := range addrs {
		args = append(args, "--allow-origin", a)
	}
	return args
}

// TrustOptions selects the credential material NewTrust makes.
type TrustOptions struct {
	// ClusterToken makes a random cluster token file, passed as
	// --cluster-token-file to every process.
	ClusterToken bool
	// AdminToken makes a separate random admin token file, passed as
	// --admin-token-file to the supernode and dfctl.
	AdminToken bool
	// TLS makes a cluster CA and one certificate for 127.0.0.1 usable as
	// server and client, passed as --tls-cert, --tls-key and --tls-ca to
	// every process (mutual TLS).
	TLS bool
}

// Trust is the credential material of one test cluster: token files
// (mode 0600) and TLS files in directories from t.TempDir(). Its methods
// start the cluster's processes with the matching flags. A nil *Trust is a
// plain cluster (no token, no TLS).
type Trust struct {
	// ClusterToken and AdminToken are the tokens themselves ("" when not
	// made); ClusterTokenFile and AdminTokenFile the files holding them.
	ClusterToken, ClusterTokenFile string
	AdminToken, AdminTokenFile     string
	// TLS names the shared certificate, its key and the CA ("" when not
	// made).
	TLS tlsconf.Options
	// CACert and CAKey are the CA's files, for IssueCert.
	CACert, CAKey string

	dir string
}

// NewTrust writes the material o asks for into a new directory from
// t.TempDir().
func NewTrust(t TB, o TrustOptions) *Trust {
	t.Helper()
	tr := &Trust{dir: t.TempDir()}
	if o.ClusterToken {
		tr.ClusterToken, tr.ClusterTokenFile = writeToken(t, tr.dir, "cluster.token")
	}
	if o.AdminToken {
		tr.AdminToken, tr.AdminTokenFile = writeToken(t, tr.dir, "admin.token")
	}
	if o.TLS {
		caDir := filepath.Join(tr.dir, "ca")
		certPEM, keyPEM, err := tlsconf.GenerateCA("damselfly test CA", 24*time.Hour)
		if err != nil {
			t.Fatalf("testenv: trust: generate CA: %v", err)
		}
		if tr.CACert, tr.CAKey, err = tlsconf.WriteFiles(caDir, "ca", certPEM, keyPEM); err != nil {
			t.Fatalf("testenv: trust: write CA: %v", err)
		}
		tr.TLS = tr.IssueCert(t, "node", tlsconf.UsageBoth)
		tr.TLS.CAFile = tr.CACert
	}
	return tr
}

// IssueCert makes another certificate for 127.0.0.1 and localhost signed by
// the cluster CA (which must exist), with the given usage, and returns its
// files (CAFile left empty).
func (tr *Trust) IssueCert(t TB, name string, usage tlsconf.Usage) tlsconf.Options {
	t.Helper()
	caCert, err := os.ReadFile(tr.CACert)
	if err != nil {
		t.Fatalf("testenv: trust: read CA: %v", err)
	}
	caKey, err := os.ReadFile(tr.CAKey)
	if err != nil {
		t.Fatalf("testenv: trust: read CA key: %v", err)
	}
	certPEM, keyPEM, err := tlsconf.GenerateCert(caCert, caKey, name, []string{"127.0.0.1", "localhost"}, 24*time.Hour, usage)
	if err != nil {
		t.Fatalf("testenv: trust: issue %s certificate: %v", name, err)
	}
	certFile, keyFile, err := tlsconf.WriteFiles(filepath.Join(tr.dir, "certs"), name, certPEM, keyPEM)
	if err != nil {
		t.Fatalf("testenv: trust: write %s certificate: %v", name, err)
	}
	return tlsconf.Options{CertFile: certFile, KeyFile: keyFile}
}

func writeToken(t TB, dir, name string) (token, path string) {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: trust: random token: %v", err)
	}
	token = hex.EncodeToString(b)
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatalf("testenv: trust: write %s: %v", name, err)
	}
	return token, path
}

// PeerArgs are the flags every process of the cluster takes:
// --cluster-token-file and --tls-cert/--tls-key/--tls-ca, as far as made.
func (tr *Trust) PeerArgs() []string {
	if tr == nil {
		return nil
	}
	var args []string
	if tr.ClusterTokenFile != "" {
		args = append(args, "--cluster-token-file", tr.ClusterTokenFile)
	}
	if tr.TLS.Enabled() {
		args = append(args, "--tls-cert", tr.TLS.CertFile, "--tls-key", tr.TLS.KeyFile, "--tls-ca", tr.TLS.CAFile)
	}
	return args
}

// AdminArgs are PeerArgs plus --admin-token-file: the flags of the
// supernode and of dfctl.
func (tr *Trust) AdminArgs() []string {
	args := tr.PeerArgs()
	if tr != nil && tr.AdminTokenFile != "" {
		args = append(args, "--admin-token-file", tr.AdminTokenFile)
	}
	return args
}

// AdminBearer is the token an admin call presents: the admin token, else
// the cluster token, else "" (no authentication).
func (tr *Trust) AdminBearer() string {
	switch {
	case tr == nil:
		return ""
	case tr.AdminToken != "":
		return tr.AdminToken
	default:
		return tr.ClusterToken
	}
}

// Scheme is "https" with TLS, else "http".
func (tr *Trust) Scheme() string {
	if tr != nil && tr.TLS.Enabled() {
		return "https"
	}
	return "http"
}

// HTTPClient returns a client for the cluster's servers: with TLS it trusts
// the cluster CA and presents the shared certificate. It sends no token.
func (tr *Trust) HTTPClient(t TB, timeout time.Duration) *http.Client {
	t.Helper()
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tr.ClientTLS(t)}, Timeout: timeout}
}

// ClientTLS returns the client TLS configuration of the cluster (nil
// without TLS), for wire.WithTLS.
func (tr *Trust) ClientTLS(t TB) *tls.Config {
	t.Helper()
	if tr == nil || !tr.TLS.Enabled() {
		return nil
	}
	cfg, err := tr.TLS.ClientConfig()
	if err != nil {
		t.Fatalf("testenv: trust: client TLS config: %v", err)
	}
	return cfg
}

// StartSupernode is testenv.StartSupernode with AdminArgs: the supernode
// remembers tr for URL, Status and its health checks.
func (tr *Trust) StartSupernode(t TB, binDir string, extra ...string) *Supernode {
	t.Helper()
	return startSupernode(t, binDir, tr, append(tr.AdminArgs(), extra...))
}

// StartDaemon is testenv.StartDaemon with PeerArgs.
func (tr *Trust) StartDaemon(t TB, binDir, supernodeAddr string, extra ...string) *Daemon {
	t.Helper()
	return StartDaemon(t, binDir, supernodeAddr, append(tr.PeerArgs(), extra...)...)
}

// Dfget is testenv.Dfget with PeerArgs.
func (tr *Trust) Dfget(t TB, binDir, supernodeAddr, url, out string, extra ...string) *Proc {
	t.Helper()
	return Dfget(t, binDir, supernodeAddr, url, out, append(tr.PeerArgs(), extra...)...)
}
