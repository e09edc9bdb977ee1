// Package peerflags owns what the peer-running commands share: the peer
// flags (supernodes, piece store, upload server, limits, locality, the
// dfdaemon socket), registered once on a command's FlagSet into Options,
// and the choice every client command makes from them — the host's dfdaemon
// when one answers on its socket, otherwise an embedded peer (Open, Source).
// It holds no product logic.
package peerflags

import (
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/trust/egress"
	"github.com/damselfly-p2p/damselfly/trust/tlsconf"
)

// DefaultSock is where dfdaemon's local API listens and clients look for it.
const DefaultSock = "/run/damselfly/dfdaemon.sock"

// Role is what a command's peer is.
type Role int

const (
	// Client commands (dfget, dfmount, df-snapshotter) use the host's
	// dfdaemon when it answers, else an embedded peer: --daemon-sock and
	// --no-daemon, and help texts about "the embedded peer".
	Client Role = iota
	// Daemon is dfdaemon, the host's peer: --sock is where it serves the
	// local API, and help texts speak of this host.
	Daemon
)

// Spec says which peer flags a command registers and how they read in its
// --help.
type Spec struct {
	Role Role
	// DataDir and DataDirHelp are --data-dir's default and help text.
	DataDir, DataDirHelp string
	// Classic adds --node, the classic dfget spelling of --supernode.
	Classic bool
	// Tuning adds the limits (Client: --totallimit and --upload-limit),
	// --idc, --rack and --concurrency; the Daemon role always has them,
	// with --upload-slots, --quota and --ttl.
	Tuning bool
	// Help replaces the role's help text of the flags it names.
	Help map[string]string
}

// Options are the peer settings a command's flags set.
type Options struct {
	Supernodes    []string
	DataDir       string
	UploadListen  string
	AdvertiseIP   string
	IDC, Rack     string
	UploadLimit   cli.Rate
	DownloadLimit cli.Rate
	UploadSlots   int
	Concurrency   int
	Quota         cli.Size
	TTL           time.Duration
	// DaemonSock is the dfdaemon's local API socket (--daemon-sock, or
	// dfdaemon's own --sock); NoDaemon skips the daemon (Client only).
	DaemonSock string
	NoDaemon   bool
	// ClusterTokenFile is --cluster-token-file (else the file named by
	// DAMSELFLY_CLUSTER_TOKEN_FILE); empty: authentication off.
	ClusterTokenFile string
	// TLS is --tls-cert, --tls-key and --tls-ca.
	TLS tlsconf.Options
	// AllowOrigin and DenyOrigin are --allow-origin and --deny-origin: the
	// origin policy of fetches a remote manifest causes (dataset entries).
	AllowOrigin, DenyOrigin []string

	fs *pflag.FlagSet
}

// Register adds the peer flags that spec selects to f, writing into o.
func (o *Options) Register(f *pflag.FlagSet, spec Spec) {
	o.fs = f
	client := spec.Role == Client
	help := func(name, def string) string {
		if h, ok := spec.Help[name]; ok {
			return h
		}
		return def
	}
	pick := func(clientText, daemonText string) string {
		if client {
			return clientText
		}
		return daemonText
	}
	f.StringSliceVar(&o.Supernodes, "supernode", nil, help("supernode",
		pick("supernode HOST:PORT, comma-separated or repeated, tried in order",
			"supernode HOST:PORT, comma-separated or repeated (tried in order)")))
	if spec.Classic {
		f.StringSliceVar(&o.Supernodes, "node", nil, help("node", "classic spelling of --supernode"))
	}
	if client {
		f.StringVar(&o.DaemonSock, "daemon-sock", DefaultSock, help("daemon-sock", "dfdaemon socket; used when a daemon answers there"))
		f.BoolVar(&o.NoDaemon, "no-daemon", false, help("no-daemon", "always use an embedded peer, even if a dfdaemon answers"))
	}
	f.StringVar(&o.DataDir, "data-dir", spec.DataDir, spec.DataDirHelp)
	f.StringVar(&o.UploadListen, "upload-listen", pick("0.0.0.0:0", "0.0.0.0:65002"), help("upload-listen",
		pick("upload server address of the embedded peer", "address of the upload server other peers download from")))
	f.StringVar(&o.AdvertiseIP, "advertise-ip", "", help("advertise-ip",
		pick("IP other peers use to reach the embedded peer (default: from the route to the supernode)",
			"IP other peers use to reach this host (default: from the route to the supernode)")))
	if !client {
		f.StringVar(&o.DaemonSock, "sock", DefaultSock, help("sock", "unix socket of the local API (dfget uses it)"))
	}
	if !client || spec.Tuning {
		if client {
			f.Var(&o.DownloadLimit, "totallimit", help("totallimit", "host-wide download limit of the embedded peer, e.g. 100M (ignored with a dfdaemon, which has its own)"))
			f.Var(&o.UploadLimit, "upload-limit", help("upload-limit", "upload cap of the embedded peer, e.g. 50M (bytes/s; 0: none)"))
		} else {
			f.Var(&o.UploadLimit, "upload-limit", help("upload-limit", "host-wide upload cap, e.g. 100M (bytes/s; 0: none)"))
			f.Var(&o.DownloadLimit, "download-limit", help("download-limit", "host-wide download cap, e.g. 200M (bytes/s; 0: none)"))
			f.IntVar(&o.UploadSlots, "upload-slots", 8, help("upload-slots", "concurrent piece uploads to other peers"))
		}
		f.StringVar(&o.IDC, "idc", "", help("idc", pick("locality label of the embedded peer: data centre",
			"locality label: data centre (parents in the same one are preferred)")))
		f.StringVar(&o.Rack, "rack", "", help("rack", pick("locality label of the embedded peer: rack", "locality label: rack")))
		f.IntVar(&o.Concurrency, "concurrency", 8, help("concurrency", pick("pieces the embedded peer keeps in flight",
			"pieces one download keeps in flight")))
	}
	f.StringVar(&o.ClusterTokenFile, "cluster-token-file", "", help("cluster-token-file",
		"file holding the cluster's shared token (default: the file named by $"+trust.EnvClusterTokenFile+
			"); unset turns authentication to the supernode and between peers off"))
	f.StringVar(&o.TLS.CertFile, "tls-cert", "", help("tls-cert", "PEM certificate of this peer: its upload server speaks TLS and every request to supernodes and peers is HTTPS (the cluster is all-TLS or all-plain)"))
	f.StringVar(&o.TLS.KeyFile, "tls-key", "", help("tls-key", "PEM private key of --tls-cert"))
	f.StringVar(&o.TLS.CAFile, "tls-ca", "", help("tls-ca", "PEM CA that signs supernode and peer certificates (default: the system roots); with it, mutual TLS: the upload server requires client certificates it signed"))
	f.StringArrayVar(&o.AllowOrigin, "allow-origin", nil, help("allow-origin", "HOST[:PORT] or CIDR a remote manifest's dataset entries may reach although the default policy refuses it (loopback, link-local, metadata addresses, own listeners); repeatable"))
	f.StringArrayVar(&o.DenyOrigin, "deny-origin", nil, help("deny-origin", "HOST[:PORT] or CIDR a remote manifest's dataset entries may never reach (wins over --allow-origin); repeatable"))
	if !client {
		f.Var(&o.Quota, "quota", help("quota", "piece store size limit, e.g. 50G (0: none)"))
		f.DurationVar(&o.TTL, "ttl", 0, help("ttl", "evict tasks not used for this long (0: never)"))
	}
}

// SupernodeList is --supernode split at commas.
func (o *Options) SupernodeList() []string { return cli.SplitList(o.Supernodes, ",") }

// ClusterToken is the cluster token (--cluster-token-file, else
// $DAMSELFLY_CLUSTER_TOKEN_FILE); the zero Secret when neither is set.
func (o *Options) ClusterToken() (trust.Secret, error) {
	s, err := trust.SecretFromFlagOrEnv(o.ClusterTokenFile, trust.EnvClusterTokenFile)
	if errors.Is(err, trust.ErrNoSecret) {
		return trust.Secret{}, nil
	}
	if err != nil {
		return trust.Secret{}, fmt.Errorf("cluster token: %w", err)
	}
	return s, nil
}

// Egress is the origin policy of --allow-origin and --deny-origin (nil,
// egress's strict default, without them).
func (o *Options) Egress() (*egress.Policy, error) {
	if len(o.AllowOrigin) == 0 && len(o.DenyOrigin) == 0 {
		return nil, nil
	}
	p, err := egress.New(egress.Options{Allow: o.AllowOrigin, Deny: o.DenyOrigin})
	if err != nil {
		return nil, fmt.Errorf("--allow-origin/--deny-origin: %w", err)
	}
	return p, nil
}

// PeerConfig is the p2p.Config of the peer these options describe.
func (o *Options) PeerConfig(log *logrus.Logger) (p2p.Config, error) {
	cfg := p2p.Config{DataDir: o.DataDir, Supernodes: o.SupernodeList(), UploadListen: o.UploadListen,
		AdvertiseIP: o.AdvertiseIP, UploadLimit: int64(o.UploadLimit), DownloadLimit: int64(o.DownloadLimit),
		UploadSlots: o.UploadSlots, Concurrency: o.Concurrency, IDC: o.IDC, Rack: o.Rack,
		Quota: int64(o.Quota), TTL: o.TTL, TLS: o.TLS}
	if log != nil { // a nil *Logger in the interface would not read as "none"
		cfg.Log = log
	}
	var err error
	if cfg.ClusterToken, err = o.ClusterToken(); err != nil {
		return p2p.Config{}, err
	}
	if cfg.Egress, err = o.Egress(); err != nil {
		return p2p.Config{}, err
	}
	return cfg, nil
}

// AuthOffWarning is the warning a peer logs at start without a cluster token.
const AuthOffWarning = "no cluster token (--cluster-token-file or $" + trust.EnvClusterTokenFile +
	"): cluster authentication is off; anyone who reaches the supernode and the upload servers can join and fetch"

// NewPeer starts the peer these options describe, warning once when
// cluster authentication is off.
func (o *Options) NewPeer(log *logrus.Logger) (*p2p.Peer, error) {
	cfg, err := o.PeerConfig(log)
	if err != nil {
		return nil, err
	}
	if cfg.ClusterToken.IsZero() && log != nil {
		log.Warn(AuthOffWarning)
	}
	return p2p.New(cfg)
}
