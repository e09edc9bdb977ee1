// Command df-snapshotter is Damselfly's containerd remote snapshotter: a
// proxy plugin (gRPC on a unix socket) whose eStargz layers are mounted
// lazily with FUSE and read through the P2P network.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/cmd/internal/config"
	"github.com/damselfly-p2p/damselfly/cmd/internal/metricsserve"
	"github.com/damselfly-p2p/damselfly/cmd/internal/peerflags"
	"github.com/damselfly-p2p/damselfly/cmd/internal/peermetrics"
	"github.com/damselfly-p2p/damselfly/cmd/internal/version"
	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/registry"
	"github.com/damselfly-p2p/damselfly/snapshotter"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "df-snapshotter:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var (
		peer                                  peerflags.Options
		address, root, dockerConfig, logLevel string
		logFormat                             string
		socketGroup                           string
		plainHTTP, mirrors                    []string
		backgroundFetch, unpackRefused        bool
		prefetchTimeout, readTimeout          time.Duration
		prefetchLimit                         cli.Rate
		mo                                    metricsserve.Options
	)
	home, _ := os.UserHomeDir()
	cmd := &cobra.Command{
		Use:   "df-snapshotter",
		Short: "containerd remote snapshotter: lazy eStargz layers over P2P",
		Long: `df-snapshotter serves containerd's snapshots API on a unix socket (a proxy
plugin). When containerd unpacks an eStargz layer (TOC digest annotation
present), the layer is mounted lazily with FUSE instead of being downloaded:
its blob is a P2P task keyed by the layer digest, so every host shares it
whatever registry name it was pulled by. Other layers are unpacked normally.
Containers see overlayfs over these layers.

containerd config.toml:

  [proxy_plugins]
    [proxy_plugins.damselfly]
      type = "snapshot"
      address = "/run/damselfly/snapshotter.sock"

then: dfctl image pull --snapshotter damselfly REF; ctr run --snapshotter damselfly REF ID.`,
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
			if peer.DataDir == "" {
				peer.DataDir = filepath.Join(root, "pieces")
			}
			ctx, stop := cli.SignalContext()
			defer stop()
			src, err := peer.Open(ctx, log)
			if err != nil {
				return err
			}
			defer src.Close()
			metrics := metricsserve.NewRegistry()
			peermetrics.RegisterState(metrics, src.Peer(), 0)
			fuseMetrics := peermetrics.NewFUSE(metrics)
			ms, err := metricsserve.Start(mo, metrics, log)
			if err != nil {
				return err
			}
			defer ms.Close()
			// Readahead only for a program going through a large file
			// (16 MiB in order): starting a container reads a few MiB
			// of binaries and libraries, and should fetch those alone.
			lazy := p2p.LazyOptions{Prefetch: backgroundFetch, PrefetchLimit: int64(prefetchLimit), ReadTimeout: readTimeout,
				ReadAheadAfter: 16}
			open := func(ctx context.Context, url string, header http.Header) (fusefs.Content, func(), error) {
				return src.OpenLazy(ctx, p2p.Request{URL: url, Header: header}, lazy)
			}
			creds, err := registry.DockerConfigCredentials(dockerConfig)
			if err != nil {
				return err
			}
			reg := &snapshotter.Registry{PlainHTTP: cli.SplitList(plainHTTP, ","), Credentials: creds, Mirrors: map[string][]string{}}
			for _, m := range mirrors {
				host, list, ok := strings.Cut(m, "=")
				if !ok {
					return fmt.Errorf("--mirror %q: want HOST=MIRROR[,MIRROR...]", m)
				}
				reg.Mirrors[host] = cli.SplitList([]string{list}, ",")
			}
			layers := &snapshotter.FUSELayers{Open: open, Registry: reg, PrefetchTimeout: prefetchTimeout,
				ReadTimeout: readTimeout, Unpack: unpackRefused, Observer: fuseMetrics, Log: log}
			sn, err := snapshotter.New(ctx, root, layers, log)
			if err != nil {
				return err
			}
			defer sn.Close()
			if err := os.MkdirAll(filepath.Dir(address), 0o755); err != nil {
				return err
			}
			if c, err := net.DialTimeout("unix", address, time.Second); err == nil {
				c.Close()
				return fmt.Errorf("another snapshotter is listening on %s", address)
			}
			os.Remove(address)
			ln, err := net.Listen("unix", address)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", address, err)
			}
			defer os.Remove(address)
			if err := cli.SecureSocket(address, gid); err != nil {
				return err
			}
			rpc := grpc.NewServer()
			snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
			go func() {
				<-ctx.Done()
				log.Info("stopping")
				stopped := make(chan struct{})
				go func() { rpc.GracefulStop(); close(stopped) }()
				select {
				case <-stopped:
				case <-time.After(5 * time.Second):
					rpc.Stop()
				}
			}()
			log.WithField("address", address).WithField("root", root).WithField("viaDaemon", src.ViaDaemon()).Info("df-snapshotter ready")
			if err := rpc.Serve(ln); err != nil {
				return err
			}
			return context.Cause(ctx)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&address, "address", "/run/damselfly/snapshotter.sock", "unix socket for containerd (proxy_plugins address)")
	f.StringVar(&socketGroup, "socket-group", "", "group (name or GID) of the --address socket, which is mode 0660 (default: the snapshotter's group)")
	f.StringVar(&root, "root", "/var/lib/damselfly/snapshotter", "snapshot metadata and directories")
	peer.Register(f, peerflags.Spec{Role: peerflags.Client, DataDirHelp: "piece store of the embedded peer (default ROOT/pieces)",
		Help: map[string]string{
			"supernode":    "supernode HOST:PORT, comma-separated or repeated",
			"daemon-sock":  "read through this dfdaemon when it answers",
			"no-daemon":    "always use an embedded peer",
			"advertise-ip": "IP other peers use to reach the embedded peer",
		}})
	f.StringSliceVar(&plainHTTP, "plain-http", nil, "registry hosts reached over plain HTTP (localhost and 127.0.0.0/8 always are)")
	f.StringArrayVar(&mirrors, "mirror", nil, "HOST=MIRROR[,MIRROR...]: fetch HOST's blobs from a mirror (repeatable)")
	f.StringVar(&dockerConfig, "docker-config", filepath.Join(home, ".docker", "config.json"), "registry credentials (docker config.json 'auths'); sent to registries only")
	f.DurationVar(&prefetchTimeout, "prefetch-timeout", 10*time.Second, "fetch a layer's prioritized files (eStargz landmark) before containerd continues, for at most this long (0: skip)")
	f.BoolVar(&backgroundFetch, "background-fetch", true, "fetch whole layers in the background, yielding to reads")
	f.Var(&prefetchLimit, "background-fetch-limit", "rate limit of the background fetch, e.g. 50M (0: none)")
	f.DurationVar(&readTimeout, "read-timeout", 30*time.Second, "a read of a missing chunk fails with EIO after this long")
	f.BoolVar(&unpackRefused, "unpack-refused", true, "when a layer cannot be mounted lazily (its TOC is refused), unpack it from the same swarm download instead of letting containerd fetch a second copy")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cli.AddLogFormat(f, &logFormat)
	mo.Register(f)
	config.Bind(cmd)
	cmd.AddCommand(version.Command("df-snapshotter"))
	return cmd
}
