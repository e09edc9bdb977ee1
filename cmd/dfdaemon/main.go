// Command dfdaemon runs a host's Damselfly peer: piece store, upload server,
// download engine, the local API that dfget uses, and the registry mirror
// and forward proxy (package proxy) that docker and containerd point at.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/cmd/internal/config"
	"github.com/damselfly-p2p/damselfly/cmd/internal/metricsserve"
	"github.com/damselfly-p2p/damselfly/cmd/internal/peerflags"
	"github.com/damselfly-p2p/damselfly/cmd/internal/peermetrics"
	"github.com/damselfly-p2p/damselfly/cmd/internal/version"
	"github.com/damselfly-p2p/damselfly/httpserve"
	"github.com/damselfly-p2p/damselfly/p2p/localapi"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "dfdaemon:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var (
		po            peerflags.Options
		logLevel      string
		logFormat     string
		gcEvery, idle time.Duration
		px            proxyFlags
		socketGroup   string
		mo            metricsserve.Options
	)
	cmd := &cobra.Command{
		Use:   "dfdaemon",
		Short: "Damselfly peer daemon (one per host)",
		Long: `dfdaemon is the host's peer: it keeps downloaded pieces in its store, serves
them to other peers, downloads for dfget through the local API on a unix
socket, and enforces host-wide upload and download rate limits.

It is also a registry mirror (--proxy-listen, default 127.0.0.1:65001):
point docker's registry-mirrors or containerd's hosts.toml at it and blob
pulls go P2P while manifests and tokens pass through to the registry. With
--forward-proxy the same port is also a plain HTTP forward proxy (curl -x)
whose --proxy-rule patterns choose which URLs go P2P.

With --cluster-token-file the peer authenticates to the supernode and its
upload server serves pieces only to peers holding a task credential; with
--tls-cert/--tls-key (and --tls-ca for mutual TLS) all its traffic is TLS.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := cli.SetupLogging(logLevel, logFormat)
			if err != nil {
				return err
			}
			gid, err := cli.LookupGroup(socketGroup)
			if err != nil {
				return err
			}
			if len(po.SupernodeList()) == 0 {
				log.Warn("no --supernode given: every download goes straight to the origin")
			}
			peer, err := po.NewPeer(log)
			if err != nil {
				return err
			}
			defer peer.Close()
			reg := metricsserve.NewRegistry()
			pm := peermetrics.NewPeer(reg, peer, po.UploadSlots)
			ms, err := metricsserve.Start(mo, reg, log)
			if err != nil {
				return err
			}
			defer ms.Close()
			stopProxy, err := px.start(cmd, peer, log)
			if err != nil {
				return err
			}
			defer stopProxy()
			ln, err := localapi.Listen(po.DaemonSock)
			if err != nil {
				return err
			}
			defer os.Remove(po.DaemonSock)
			if err := cli.SecureSocket(po.DaemonSock, gid); err != nil {
				return err
			}
			ctx, stop := cli.SignalContext()
			defer stop()
			srv := httpserve.Server(pm.LocalAPI((&localapi.Server{Peer: peer, Log: log}).Handler()), httpserve.Limits{})
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			}()
			if n, err := peer.Restore(ctx); err != nil {
				log.WithError(err).Warn("could not restore stored tasks")
			} else if n > 0 {
				log.WithField("tasks", n).Info("serving tasks kept from before")
			}
			go peer.Seed(ctx, idle)
			go func() {
				t := time.NewTicker(gcEvery)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						if removed, freed, err := peer.GC(ctx); err != nil {
							log.WithError(err).Warn("cache GC")
						} else if len(removed) > 0 {
							pm.Evicted(len(removed), freed)
							log.WithField("tasks", len(removed)).WithField("bytes", freed).Info("cache GC")
						}
					}
				}
			}()
			log.WithField("upload", peer.UploadAddr()).WithField("sock", po.DaemonSock).WithField("peer", peer.ID()).Info("dfdaemon ready")
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			log.Info("dfdaemon stopped")
			return nil
		},
	}
	f := cmd.Flags()
	po.Register(f, peerflags.Spec{Role: peerflags.Daemon, DataDir: "/var/lib/damselfly/dfdaemon", DataDirHelp: "where pieces are kept"})
	f.DurationVar(&gcEvery, "gc-interval", time.Minute, "how often cache GC runs")
	f.DurationVar(&idle, "seed-idle", 30*time.Minute, "stop serving a finished task after it has been idle this long (it stays cached)")
	f.StringVar(&socketGroup, "socket-group", "", "group (name or GID) of the local API socket, which is mode 0660: members may download through this daemon (default: the daemon's group)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cli.AddLogFormat(f, &logFormat)
	mo.Register(f)
	px.register(f)
	config.Bind(cmd)
	cmd.AddCommand(version.Command("dfdaemon"))
	return cmd
}
