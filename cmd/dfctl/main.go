// Command dfctl is Damselfly's admin tool: it preheats files and images
// into the supernode's cache and shows what the supernode knows (tasks,
// peers, preheats). Subcommands live one per file: preheat.go, and
// image*.go for image tools, which register themselves in extraCommands.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/cmd/internal/version"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/trust/tlsconf"
	"github.com/damselfly-p2p/damselfly/wire"
)

// SupernodeEnv names the environment variable with the default --supernode.
const SupernodeEnv = "DAMSELFLY_SUPERNODE"

// globalOptions are the flags every subcommand shares.
type globalOptions struct {
	supernode        string
	logLevel         string
	logFormat        string
	clusterTokenFile string
	adminTokenFile   string
	tls              tlsconf.Options
}

// extraCommands are subcommands other files of this command add in their
// init functions (image tools).
var extraCommands []func(*globalOptions) *cobra.Command

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "dfctl:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "dfctl",
		Short: "Damselfly admin tool: preheat, status, cluster certificates",
		Long: `dfctl talks to a supernode's API: it preheats files and images into the
supernode's cache (so that the first pull is served from there) and shows
tasks, peers and preheats. In a cluster with tokens give --admin-token-file
(or --cluster-token-file when the supernode has no admin token); with TLS
give --tls-ca (and --tls-cert/--tls-key for mutual TLS). dfctl cert makes
the cluster's CA and certificates.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cli.SetupLogging(g.logLevel, g.logFormat)
			return err
		},
	}
	def := os.Getenv(SupernodeEnv)
	if def == "" {
		def = "127.0.0.1:8002"
	}
	root.PersistentFlags().StringVar(&g.supernode, "supernode", def, "supernode HOST:PORT (default $"+SupernodeEnv+" or 127.0.0.1:8002)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "debug, info, warn or error")
	pf := root.PersistentFlags()
	cli.AddLogFormat(pf, &g.logFormat)
	pf.StringVar(&g.clusterTokenFile, "cluster-token-file", "",
		"file holding the cluster's shared token (env "+trust.EnvClusterTokenFile+" when unset); sent when no admin token is given")
	pf.StringVar(&g.adminTokenFile, "admin-token-file", "",
		"file holding the supernode's admin token for status and preheats (env "+trust.EnvAdminTokenFile+" when unset)")
	pf.StringVar(&g.tls.CertFile, "tls-cert", "", "PEM client certificate to present to the supernode (mutual TLS)")
	pf.StringVar(&g.tls.KeyFile, "tls-key", "", "PEM private key of --tls-cert")
	pf.StringVar(&g.tls.CAFile, "tls-ca", "", "PEM CA bundle the supernode's certificate must chain to; any --tls-* flag makes the calls HTTPS")
	root.AddCommand(newPreheatCommand(g), newStatusCommand(g), version.Command("dfctl"))
	for _, f := range extraCommands {
		root.AddCommand(f(g))
	}
	return root
}

// apiClient calls one supernode's admin API through wire.Client, with the
// admin token (else the cluster token) and TLS when configured.
type apiClient struct {
	addr string
	wc   *wire.Client
}

// adminTimeout bounds one admin call.
const adminTimeout = 30 * time.Second

func (g *globalOptions) client() (*apiClient, error) {
	if _, _, err := net.SplitHostPort(g.supernode); err != nil {
		return nil, fmt.Errorf("--supernode %q: want HOST:PORT", g.supernode)
	}
	var opts []wire.Option
	cluster, err := optionalSecret(g.clusterTokenFile, trust.EnvClusterTokenFile)
	if err != nil {
		return nil, fmt.Errorf("cluster token: %w", err)
	}
	if !cluster.IsZero() {
		opts = append(opts, wire.WithClusterToken(cluster))
	}
	admin, err := optionalSecret(g.adminTokenFile, trust.EnvAdminTokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	if !admin.IsZero() {
		opts = append(opts, wire.WithAdminToken(admin))
	}
	if g.tls.Enabled() {
		cfg, err := g.tls.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("TLS client configuration: %w", err)
		}
		opts = append(opts, wire.WithTLS(cfg))
	}
	wc, err := wire.NewClient([]string{g.supernode}, opts...)
	if err != nil {
		return nil, err
	}
	return &apiClient{addr: g.supernode, wc: wc}, nil
}

// optionalSecret loads the token file named by the flag or the environment;
// neither set means no token (the zero Secret), not an error.
func optionalSecret(flagValue, env string) (trust.Secret, error) {
	s, err := trust.SecretFromFlagOrEnv(flagValue, env)
	if errors.Is(err, trust.ErrNoSecret) {
		return trust.Secret{}, nil
	}
	return s, err
}

// call sends an admin request (in may be nil) and decodes the answer into
// out; error answers become errors with the supernode's message.
func (c *apiClient) call(ctx context.Context, method, path string, in, out any) error {
	if err := c.wc.Admin(ctx, method, path, in, out, adminTimeout); err != nil {
		var e *wire.Error
		if errors.As(err, &e) {
			return err // already says "supernode: ..."
		}
		return fmt.Errorf("supernode at %s: %s %s: %w", c.addr, method, path, err)
	}
	return nil
}

// baseURL is the supernode's URL (scheme and address) for messages.
func (c *apiClient) baseURL() string { return c.wc.Scheme() + "://" + c.addr }

func newStatusCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the supernode's tasks, peers and preheats",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var st wire.Status
			if err := c.call(ctx, http.MethodGet, "/api/v1/status", nil, &st); err != nil {
				return err
			}
			var pre []wire.PreheatStatus
			if err := c.call(ctx, http.MethodGet, "/api/v1/preheats", nil, &pre); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"status": st, "preheats": pre})
			}
			printStatus(out, &st, pre)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(out io.Writer, st *wire.Status, pre []wire.PreheatStatus) {
	fmt.Fprintf(out, "supernode %s, up %s: %d tasks, %d peers, %d preheats\n", st.Supernode, st.Uptime, len(st.Tasks), len(st.Peers), len(pre))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if len(st.Tasks) > 0 {
		fmt.Fprintln(tw, "\nTASK\tSTATE\tSIZE\tSEED\tFROM ORIGIN\tSERVED\tPEERS\tURL")
		for _, t := range st.Tasks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%d (%d done)\t%s\n", short(t.TaskID), t.State, ratelimit.HumanBytes(t.Length),
				t.SeedPieces, t.NumPieces, ratelimit.HumanBytes(t.BytesFromOrigin), ratelimit.HumanBytes(t.BytesServed), t.Peers, t.PeersDone, t.URL)
		}
	}
	if len(st.Peers) > 0 {
		peers := append([]wire.PeerStatus(nil), st.Peers...)
		sort.Slice(peers, func(i, j int) bool { return peers[i].PeerID < peers[j].PeerID })
		fmt.Fprintln(tw, "\nPEER\tADDR\tTASKS\tFAILURES\tISOLATED")
		for _, p := range peers {
			iso := "no"
			if p.Isolated {
				iso = "yes: " + p.Reason
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", p.PeerID, p.Addr, p.Tasks, p.Failures, iso)
		}
	}
	if len(pre) > 0 {
		fmt.Fprintln(tw, "\nPREHEAT\tSTATE\tTYPE\tBLOBS\tPRESENT\tTRIGGER\tURL")
		for _, p := range pre {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s/%s\t%s\t%s\n", p.ID, p.State, p.Type, len(p.Blobs),
				ratelimit.HumanBytes(p.Present), ratelimit.HumanBytes(p.Length), p.Trigger, p.URL)
		}
	}
	tw.Flush()
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

var errFailed = errors.New("failed")
