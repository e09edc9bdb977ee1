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
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/p2p/localapi"
)

// DefaultSock is where dfdaemon listens and dfget looks by default.
const DefaultSock = "/run/damselfly/dfdaemon.sock"

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "dfdaemon:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var (
		supernodes                               []string
		dataDir, uploadListen, advertiseIP, sock string
		idc, rack, logLevel                      string
		upLimit, downLimit                       cli.Rate
		quota                                    cli.Size
		slots, conc                              int
		ttl, gcEvery, idle                       time.Duration
		px                                       proxyFlags
	)
	cmd := &cobra.Command{
		Use:   "dfdaemon",
		Short: "Damselfly peer daemon (one per host)",
		Long: `dfdaemon is the host's peer: it keeps downloaded pieces in its store, serves
them to other peers, downloads for dfget through the local API on a unix
socket, and enforces host-wide upload and download rate limits.

It is also a registry mirror (--proxy-listen, default 127.0.0.1:65001):
point docker's registry-mirrors or containerd's hosts.toml at it and blob
pulls go P2P while manifests and tokens pass through to the registry. The
same port is a plain HTTP forward proxy (curl -x) whose --proxy-rule
patterns choose which URLs go P2P.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := cli.SetupLog(logLevel)
			if err != nil {
				return err
			}
			snodes := cli.SplitList(supernodes, ",")
			if len(snodes) == 0 {
				log.Warn("no --supernode given: every download goes straight to the origin")
			}
			peer, err := p2p.New(p2p.Config{DataDir: dataDir, Supernodes: snodes, UploadListen: uploadListen,
				AdvertiseIP: advertiseIP, UploadLimit: int64(upLimit), DownloadLimit: int64(downLimit),
				UploadSlots: slots, Concurrency: conc, IDC: idc, Rack: rack, Quota: int64(quota), TTL: ttl, Log: log})
			if err != nil {
				return err
			}
			defer peer.Close()
			stopProxy, err := px.start(cmd, peer, log)
			if err != nil {
				return err
			}
			defer stopProxy()
			ln, err := localapi.Listen(sock)
			if err != nil {
				return err
			}
			defer os.Remove(sock)
			ctx, stop := cli.SignalContext()
			defer stop()
			srv := &http.Server{Handler: (&localapi.Server{Peer: peer, Log: log}).Handler()}
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
							log.WithField("tasks", len(removed)).WithField("bytes", freed).Info("cache GC")
						}
					}
				}
			}()
			log.WithField("upload", peer.UploadAddr()).WithField("sock", sock).WithField("peer", peer.ID()).Info("dfdaemon ready")
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			log.Info("dfdaemon stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&supernodes, "supernode", nil, "supernode HOST:PORT, comma-separated or repeated (tried in order)")
	f.StringVar(&dataDir, "data-dir", "/var/lib/damselfly/dfdaemon", "where pieces are kept")
	f.StringVar(&uploadListen, "upload-listen", "0.0.0.0:65002", "address of the upload server other peers download from")
	f.StringVar(&advertiseIP, "advertise-ip", "", "IP other peers use to reach this host (default: from the route to the supernode)")
	f.StringVar(&sock, "sock", DefaultSock, "unix socket of the local API (dfget uses it)")
	f.Var(&upLimit, "upload-limit", "host-wide upload cap, e.g. 100M (bytes/s; 0: none)")
	f.Var(&downLimit, "download-limit", "host-wide download cap, e.g. 200M (bytes/s; 0: none)")
	f.IntVar(&slots, "upload-slots", 8, "concurrent piece uploads to other peers")
	f.IntVar(&conc, "concurrency", 8, "pieces one download keeps in flight")
	f.StringVar(&idc, "idc", "", "locality label: data centre (parents in the same one are preferred)")
	f.StringVar(&rack, "rack", "", "locality label: rack")
	f.Var(&quota, "quota", "piece store size limit, e.g. 50G (0: none)")
	f.DurationVar(&ttl, "ttl", 0, "evict tasks not used for this long (0: never)")
	f.DurationVar(&gcEvery, "gc-interval", time.Minute, "how often cache GC runs")
	f.DurationVar(&idle, "seed-idle", 30*time.Minute, "stop serving a finished task after it has been idle this long (it stays cached)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	px.register(f)
	return cmd
}
