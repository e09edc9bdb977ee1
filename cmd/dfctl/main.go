// Command dfctl is Damselfly's admin tool: it preheats files and images
// into the supernode's cache and shows what the supernode knows (tasks,
// peers, preheats). Subcommands live one per file: preheat.go, and
// image*.go for image tools, which register themselves in extraCommands.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/wire"
)

// SupernodeEnv names the environment variable with the default --supernode.
const SupernodeEnv = "DAMSELFLY_SUPERNODE"

// globalOptions are the flags every subcommand shares.
type globalOptions struct {
	supernode string
	logLevel  string
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
		Short: "Damselfly admin tool: preheat, status",
		Long: `dfctl talks to a supernode's API: it preheats files and images into the
supernode's cache (so that the first pull is served from there) and shows
tasks, peers and preheats.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cli.SetupLog(g.logLevel)
			return err
		},
	}
	def := os.Getenv(SupernodeEnv)
	if def == "" {
		def = "127.0.0.1:8002"
	}
	root.PersistentFlags().StringVar(&g.supernode, "supernode", def, "supernode HOST:PORT (default $"+SupernodeEnv+" or 127.0.0.1:8002)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "debug, info, warn or error")
	root.AddCommand(newPreheatCommand(g), newStatusCommand(g))
	for _, f := range extraCommands {
		root.AddCommand(f(g))
	}
	return root
}

// apiClient calls one supernode's HTTP API.
type apiClient struct {
	base string
	hc   *http.Client
}

func (g *globalOptions) client() (*apiClient, error) {
	if _, _, err := net.SplitHostPort(g.supernode); err != nil {
		return nil, fmt.Errorf("--supernode %q: want HOST:PORT", g.supernode)
	}
	return &apiClient{base: "http://" + g.supernode, hc: &http.Client{Timeout: 30 * time.Second}}, nil
}

// call sends a JSON request (in may be nil) and decodes the answer into
// out; error answers become errors with the supernode's message.
func (c *apiClient) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("supernode at %s: %w", strings.TrimPrefix(c.base, "http://"), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("supernode at %s: read answer: %w", strings.TrimPrefix(c.base, "http://"), err)
	}
	if resp.StatusCode >= 300 {
		var e wire.ErrorResponse
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return fmt.Errorf("supernode: %s", e.Message)
		}
		return fmt.Errorf("supernode: %s %s answered %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("supernode: bad answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}

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
