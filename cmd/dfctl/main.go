// Command dfctl is Damselfly's admin tool: it preheats files and images
// into the supernode's cache and shows what the supernode knows (tasks,
// peers, preheats). Subcommands live one per file: preheat.go, and
// image*.go for image tools, which register themselves in extraCommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/cmd/internal/version"
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
	root.PersistentFlags().StringVar(&g.supernode, "supernode", def,
		"supernode HOST:PORT, a comma-separated list of them, or a DNS name standing for several (default $"+SupernodeEnv+" or 127.0.0.1:8002)")
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

// apiClient calls the supernodes' admin API through wire.Client, with the
// admin token (else the cluster token) and TLS when configured. Calls go
// to the supernode pinned by pin (the owner a preheat was sent to), else
// to any that answers.
type apiClient struct {
	addr string
	wc   *wire.Client
	at   string
}

// adminTimeout bounds one admin call.
const adminTimeout = 30 * time.Second

func (g *globalOptions) client() (*apiClient, error) {
	addrs := strings.Split(g.supernode, ",")
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(a)); err != nil {
			return nil, fmt.Errorf("--supernode %q: want HOST:PORT[,HOST:PORT...]", g.supernode)
		}
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
	wc, err := wire.NewClient(addrs, opts...)
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
	var err error
	if c.at != "" {
		err = c.wc.AdminAt(ctx, c.at, method, path, in, out, adminTimeout)
	} else {
		err = c.wc.Admin(ctx, method, path, in, out, adminTimeout)
	}
	if err != nil {
		var e *wire.Error
		if errors.As(err, &e) {
			return err // already says "supernode: ..."
		}
		return fmt.Errorf("supernode at %s: %s %s: %w", c.addr, method, path, err)
	}
	return nil
}

// callOwner sends an admin request about taskID to the task's owner and
// pins the client to the supernode that answered.
func (c *apiClient) callOwner(ctx context.Context, taskID, method, path string, in, out any) error {
	at, err := c.wc.AdminFor(ctx, taskID, method, path, in, out, adminTimeout)
	if err != nil {
		var e *wire.Error
		if errors.As(err, &e) {
			return err
		}
		return fmt.Errorf("supernodes %s: %s %s: %w", c.addr, method, path, err)
	}
	c.at = at
	return nil
}

// baseURL is the URL (scheme and address) of the supernode the client is
// pinned to, else of the one that last answered, for messages.
func (c *apiClient) baseURL() string {
	if c.at != "" {
		return c.wc.Scheme() + "://" + c.at
	}
	return c.wc.Scheme() + "://" + c.wc.Current()
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

var errFailed = errors.New("failed")
