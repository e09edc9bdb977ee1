package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrNotEnabled is returned by ServerConfig and ClientConfig for Options that
// name no file at all; callers check Enabled first and stay on plain HTTP.
var ErrNotEnabled = errors.New("TLS not configured (no --tls-cert, --tls-key or --tls-ca)")

// Options are the TLS flags every binary shares.
type Options struct {
	CertFile string // --tls-cert: PEM certificate (chain) presented by this side
	KeyFile  string // --tls-key: PEM private key of CertFile
	CAFile   string // --tls-ca: PEM CA bundle trusted for the other side
}

// Enabled reports whether any TLS file is configured.
func (o Options) Enabled() bool {
	return o.CertFile != "" || o.KeyFile != "" || o.CAFile != ""
}

func (o Options) check() error {
	if !o.Enabled() {
		return ErrNotEnabled
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("--tls-cert and --tls-key must be given together")
	}
	return nil
}

// ServerConfig returns the configuration of a TLS listener: it presents
// CertFile (reloaded when CertFile or KeyFile changes on disk) and, when
// CAFile is set, requires and verifies a client certificate signed by that CA
// (mutual TLS). The files are read once here, so errors surface at start.
func (o Options) ServerConfig() (*tls.Config, error) {
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("TLS server configuration: %w", err)
	}
	if o.CertFile == "" {
		return nil, errors.New("TLS server configuration: a server needs --tls-cert and --tls-key")
	}
	kp, err := loadKeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS server configuration: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.get()
		},
	}
	if o.CAFile != "" {
		pool, err := loadCAPool(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS server configuration: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientConfig returns the configuration of a TLS client: it trusts CAFile
// (the system roots when CAFile is empty) and presents CertFile when set
// (reloaded when its files change).
func (o Options) ClientConfig() (*tls.Config, error) {
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("TLS client configuration: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pool, err := loadCAPool(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client configuration: %w", err)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" {
		kp, err := loadKeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client configuration: %w", err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.get()
		}
	}
	return cfg, nil
}

func loadCAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("read CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// keyPair is a certificate and key loaded from files and reloaded when
// either file's modification time or size changes. A reload that fails (for
// instance while the cert is replaced but not yet the key) keeps serving the
// previous pair and is retried at the next handshake.
type keyPair struct {
	certFile, keyFile string

	mu       sync.Mutex
	cert     *tls.Certificate
	certStat fileStamp
	keyStat  fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func (a fileStamp) same(b fileStamp) bool { return a.size == b.size && a.mod.Equal(b.mod) }

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

func loadKeyPair(certFile, keyFile string) (*keyPair, error) {
	kp := &keyPair{certFile: certFile, keyFile: keyFile}
	if err := kp.reload(); err != nil {
		return nil, err
	}
	return kp, nil
}

// reload reads both files; callers hold mu or own kp exclusively.
func (kp *keyPair) reload() error {
	cs, err := stamp(kp.certFile)
	if err != nil {
		return fmt.Errorf("read certificate file: %w", err)
	}
	ks, err := stamp(kp.keyFile)
	if err != nil {
		return fmt.Errorf("read key file: %w", err)
	}
	certPEM, err := os.ReadFile(kp.certFile)
	if err != nil {
		return fmt.Errorf("read certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(kp.keyFile)
	if err != nil {
		return fmt.Errorf("read key file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load key pair (certificate %s, key %s): %w", kp.certFile, kp.keyFile, err)
	}
	kp.cert, kp.certStat, kp.keyStat = &cert, cs, ks
	return nil
}

func (kp *keyPair) get() (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	cs, cerr := stamp(kp.certFile)
	ks, kerr := stamp(kp.keyFile)
	if cerr == nil && kerr == nil && (!cs.same(kp.certStat) || !ks.same(kp.keyStat)) {
		_ = kp.reload() // on failure keep the previous pair; retried next time
	}
	return kp.cert, nil
}
