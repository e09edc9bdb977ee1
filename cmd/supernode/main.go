// Command supernode runs Damselfly's tracker, scheduler and CDN seed.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/cmd/internal/config"
	"github.com/damselfly-p2p/damselfly/cmd/internal/metricsserve"
	"github.com/damselfly-p2p/damselfly/cmd/internal/version"
	"github.com/damselfly-p2p/damselfly/httpserve"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/trust/egress"
	"github.com/damselfly-p2p/damselfly/trust/tlsconf"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "supernode:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var (
		listen, advertise, dataDir, logLevel string
		logFormat                            string
		originConc, seedSlots, fanout        int
		revalidate, ttl, peerTTL             time.Duration
		quota                                cli.Size
		clusterFile, adminFile, notifyFile   string
		tlsOpts                              tlsconf.Options
		allowOrigins, denyOrigins            []string
		s3Endpoints                          []string
		clusterMembers                       []string
		registerRate                         float64
		registerBurst, statusLimit           int
		maxOpenTasks, preheatQueue           int
		seedLead                             int
		seedIdle, preheatTimeout             time.Duration
		metricsOpts                          metricsserve.Options
	)
	cmd := &cobra.Command{
		Use:   "supernode",
		Short: "Damselfly supernode: tracker, scheduler and CDN seed",
		Long: `The supernode tracks which peers hold which pieces of which task, hands each
downloading peer a few scored parents, and is the passive CDN seed: the first
registration of a URL makes it fetch the content from the origin in pieces
(sha256 per piece), serving each piece as soon as it is in.

API: POST /api/v1/tasks/register|sync, /api/v1/peers/heartbeat|announce|leave;
GET /api/v1/status (JSON), /api/v1/tasks/{id}, /metrics (Prometheus), /healthz.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := cli.SetupLogging(logLevel, logFormat)
			if err != nil {
				return err
			}
			cluster, err := optionalSecret(clusterFile, trust.EnvClusterTokenFile, "cluster")
			if err != nil {
				return err
			}
			admin, err := optionalSecret(adminFile, trust.EnvAdminTokenFile, "admin")
			if err != nil {
				return err
			}
			notify, err := optionalSecret(notifyFile, "", "notifications")
			if err != nil {
				return err
			}
			if cluster.IsZero() {
				log.Warn("no cluster token (--cluster-token-file): authentication is OFF; anyone who reaches this port can use the supernode")
			}
			policy, err := egress.New(egress.Options{Allow: allowOrigins, Deny: denyOrigins})
			if err != nil {
				return fmt.Errorf("origin policy: %w", err)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			if err := policy.AddOwnAddr(ln.Addr().String()); err != nil {
				ln.Close()
				return fmt.Errorf("origin policy: %w", err)
			}
			adv := advertise
			if adv == "" {
				adv = advertiseFor(ln.Addr().(*net.TCPAddr))
			}
			if adv != ln.Addr().String() {
				if err := policy.AddOwnAddr(adv); err != nil {
					log.WithError(err).Debug("origin policy: advertise address is not an IP address; only the listen address is refused as an origin")
				}
			}
			if tlsOpts.Enabled() {
				cfg, err := tlsOpts.ServerConfig()
				if err != nil {
					ln.Close()
					return fmt.Errorf("TLS: %w", err)
				}
				ln = tls.NewListener(ln, cfg)
			}
			var clusterTLS *tls.Config
			if tlsOpts.Enabled() && len(clusterMembers) > 0 {
				if clusterTLS, err = tlsOpts.ClientConfig(); err != nil {
					ln.Close()
					return fmt.Errorf("TLS for cluster members: %w", err)
				}
			}
			sn, err := supernode.New(supernode.Config{DataDir: dataDir, AdvertiseAddr: adv,
				Cluster: clusterMembers, ClusterTLS: clusterTLS,
				OriginConcurrency: originConc, SeedUploadSlots: seedSlots, SeedFanout: fanout, Revalidate: revalidate,
				Quota: int64(quota), TTL: ttl, Log: log,
				ClusterToken: cluster, AdminToken: admin, NotificationsToken: notify, Egress: policy,
				RegisterRate: registerRate, RegisterBurst: registerBurst, StatusLimit: statusLimit,
				MaxOpenTasks: maxOpenTasks, SeedIdle: seedIdle, PreheatQueue: preheatQueue, PreheatTimeout: preheatTimeout,
				S3Endpoints: s3Endpoints, SeedLead: seedLeadConfig(seedLead)})
			if err != nil {
				ln.Close()
				return err
			}
			defer sn.Close()
			sn.SetPeerTTL(peerTTL)
			ms, err := metricsserve.Start(metricsOpts, supernodeGatherer(sn.Handler(), admin, cluster), log)
			if err != nil {
				return err
			}
			defer ms.Close()
			// Bounded reads and writes; registration long polls and piece
			// streams are bounded by progress (see httpserve).
			srv := httpserve.Server(sn.Handler(), httpserve.Limits{})
			ctx, stop := cli.SignalContext()
			defer stop()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			}()
			log.WithField("listen", ln.Addr().String()).WithField("advertise", adv).WithField("dataDir", dataDir).Info("supernode ready")
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			log.Info("supernode stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "0.0.0.0:8002", "address for the API and the seed's piece server")
	f.StringVar(&advertise, "advertise-addr", "", "HOST:PORT at which peers reach this supernode (default: the listen address; with 0.0.0.0, this host's primary IP)")
	f.StringVar(&dataDir, "data-dir", "/var/lib/damselfly/supernode", "where the seed keeps pieces")
	f.IntVar(&originConc, "origin-concurrency", 4, "range requests in flight to one origin")
	f.IntVar(&seedSlots, "seed-upload-slots", 8, "concurrent piece uploads from the seed (lower pushes peers to serve each other)")
	f.IntVar(&fanout, "seed-fanout", 2, "children that get a fresh piece from the seed before others must fetch it from them (super-seeding; negative: off)")
	f.DurationVar(&revalidate, "revalidate", 30*time.Second, "trust a finished seed copy this long before revalidating it with the origin (If-None-Match/If-Modified-Since); negative: never")
	f.Var(&quota, "quota", "cache size limit, e.g. 100G (0: none)")
	f.DurationVar(&ttl, "ttl", 0, "evict cached tasks not used for this long (0: never)")
	f.DurationVar(&peerTTL, "peer-ttl", 45*time.Second, "forget peers not heard from for this long")
	f.Float64Var(&registerRate, "register-rate", supernode.DefaultRegisterRate, "registrations a second one client (its peer credential, else its IP address) may make; beyond, 429 with Retry-After (negative: unlimited)")
	f.IntVar(&registerBurst, "register-burst", supernode.DefaultRegisterBurst, "registrations one client may make at once before --register-rate applies")
	f.IntVar(&maxOpenTasks, "max-open-tasks", supernode.DefaultMaxOpenTasks, "seed tasks kept open at once (3 open files each); beyond, the least recently used are closed and reopened from the store when asked for again (negative: no cap)")
	f.DurationVar(&seedIdle, "seed-idle", supernode.DefaultSeedIdle, "close a seed task not registered, synced or served for this long (it stays in the store; negative: never)")
	f.IntVar(&seedLead, "seed-lead", supernode.DefaultSeedLead, "pieces no peer holds yet that the seed's background fill may fetch ahead of the swarm (at least 3 MiB worth; pieces being fetched count), bounding what dies with a killed owner; on-demand fetches and preheats are not paced (0: unpaced)")
	f.IntVar(&preheatQueue, "preheat-queue", supernode.DefaultPreheatQueue, "unfinished preheats accepted at once; beyond, 429 with Retry-After")
	f.DurationVar(&preheatTimeout, "preheat-timeout", supernode.DefaultPreheatTimeout, "a preheat not finished after this long fails")
	f.IntVar(&statusLimit, "status-limit", supernode.DefaultStatusLimit, "tasks and peers GET /api/v1/status lists by default (?limit= and ?offset= page; totals are always given)")
	f.StringVar(&clusterFile, "cluster-token-file", "", "file holding the cluster's shared token (mode 0600; env "+trust.EnvClusterTokenFile+" when unset); with it every API call and piece request needs a credential. Unset: authentication off")
	f.StringVar(&adminFile, "admin-token-file", "", "file holding the admin token for status, task status, preheats and metrics (env "+trust.EnvAdminTokenFile+" when unset; default: the cluster token)")
	f.StringVar(&notifyFile, "notifications-token-file", "", "file holding the bearer token the registry sends with its notifications (required for the webhook when a cluster token is set)")
	f.StringVar(&tlsOpts.CertFile, "tls-cert", "", "PEM certificate this supernode presents; with it the API and piece server are HTTPS only")
	f.StringVar(&tlsOpts.KeyFile, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&tlsOpts.CAFile, "tls-ca", "", "PEM CA bundle: clients must present a certificate it signed (mutual TLS)")
	f.StringArrayVar(&allowOrigins, "allow-origin", nil, "HOST[:PORT] or CIDR the seed, preheat and notifications may fetch from although the default policy refuses it (loopback, link-local); repeatable")
	f.StringArrayVar(&denyOrigins, "deny-origin", nil, "HOST[:PORT] or CIDR the seed, preheat and notifications must never fetch from (wins over --allow-origin); repeatable")
	f.StringArrayVar(&s3Endpoints, "s3-endpoint", nil, "object store endpoint SCHEME://HOST[:PORT] (e.g. https://s3.us-east-1.amazonaws.com, http://minio:9000) whose presigned URLs peers may register s3:// objects with, so that the seed fetches each object once for the swarm (it must pass --allow-origin/--deny-origin too); repeatable. Unset: s3 objects are refused and peers read them from the store themselves")
	f.StringSliceVar(&clusterMembers, "cluster", nil, "the other supernodes, HOST:PORT,... or a DNS name standing for several (as peers' --supernode): the dashboard shows the whole cluster and image preheats send each blob to its owner; calls carry the admin token, else the cluster token, and use --tls-* when set")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cli.AddLogFormat(f, &logFormat)
	metricsOpts.Register(f)
	config.Bind(cmd)
	cmd.AddCommand(version.Command("supernode"))
	return cmd
}

// seedLeadConfig maps --seed-lead (0: unpaced) to Config.SeedLead (0:
// the default, negative: unpaced).
func seedLeadConfig(flag int) int {
	if flag <= 0 {
		return -1
	}
	return flag
}

// optionalSecret loads a token file named by the flag value or envName; an
// unset file is the absent secret.
func optionalSecret(flagValue, envName, what string) (trust.Secret, error) {
	if flagValue == "" && envName == "" {
		return trust.Secret{}, nil
	}
	s, err := trust.SecretFromFlagOrEnv(flagValue, envName)
	if errors.Is(err, trust.ErrNoSecret) {
		return trust.Secret{}, nil
	}
	if err != nil {
		return trust.Secret{}, fmt.Errorf("load %s token: %w", what, err)
	}
	return s, nil
}

// advertiseFor turns a listen address into one peers can dial: with an
// unspecified IP, the first non-loopback IPv4 address of this host.
func advertiseFor(a *net.TCPAddr) string {
	if !a.IP.IsUnspecified() {
		return a.String()
	}
	ip := "127.0.0.1"
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				ip = n.IP.String()
				break
			}
		}
	}
	return net.JoinHostPort(ip, fmt.Sprint(a.Port))
}
