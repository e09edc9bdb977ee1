// Command supernode runs Damselfly's tracker, scheduler and CDN seed.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/supernode"
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
		originConc, seedSlots, fanout        int
		revalidate, ttl, peerTTL             time.Duration
		quota                                cli.Size
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
			log, err := cli.SetupLog(logLevel)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			adv := advertise
			if adv == "" {
				adv = advertiseFor(ln.Addr().(*net.TCPAddr))
			}
			sn, err := supernode.New(supernode.Config{DataDir: dataDir, AdvertiseAddr: adv,
				OriginConcurrency: originConc, SeedUploadSlots: seedSlots, SeedFanout: fanout, Revalidate: revalidate,
				Quota: int64(quota), TTL: ttl, Log: log})
			if err != nil {
				ln.Close()
				return err
			}
			defer sn.Close()
			sn.SetPeerTTL(peerTTL)
			srv := &http.Server{Handler: sn.Handler(), ReadHeaderTimeout: 10 * time.Second}
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
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
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
