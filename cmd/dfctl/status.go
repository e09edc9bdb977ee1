package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/wire"
)

// clusterStatus is every supernode's status, merged: dfctl status --json.
type clusterStatus struct {
	Supernodes []nodeStatus `json:"supernodes"`
	// Tasks lists each task once per supernode that knows it; Owner marks
	// the supernode that owns it now (HRW over the live supernodes).
	Tasks []ownedTask       `json:"tasks"`
	Peers []mergedPeer      `json:"peers"`
	Owner map[string]string `json:"owners"` // task ID -> owning supernode
}

type nodeStatus struct {
	Addr     string               `json:"addr"`
	Up       bool                 `json:"up"`
	Error    string               `json:"error,omitempty"`
	Status   *wire.Status         `json:"status,omitempty"`
	Preheats []wire.PreheatStatus `json:"preheats,omitempty"`
}

type ownedTask struct {
	Supernode string `json:"supernode"`
	Owner     bool   `json:"owner"`
	wire.TaskStatus
}

// mergedPeer is a peer as all supernodes see it.
type mergedPeer struct {
	wire.PeerStatus
	Supernodes []string `json:"supernodes"`
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the supernodes' tasks (and which supernode owns each), peers and preheats",
		Long: `status asks every supernode --supernode names (a list, or a DNS name standing
for several) for its status and shows them merged: each supernode and whether
it answers, each task with the supernode that owns it (the one rendezvous
hashing of the task ID picks among the live supernodes; OWNER is * there), the
peers and the preheats.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			cs, err := gatherStatus(cmd.Context(), c)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(cs)
			}
			printStatus(out, cs)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// gatherStatus asks every supernode for its status and preheats. It fails
// only when none answers.
func gatherStatus(ctx context.Context, c *apiClient) (*clusterStatus, error) {
	cs := &clusterStatus{Owner: map[string]string{}}
	var live []string
	var lastErr error
	for _, addr := range c.wc.Members(ctx) {
		ns := nodeStatus{Addr: addr}
		var st wire.Status
		err := c.wc.AdminAt(ctx, addr, http.MethodGet, "/api/v1/status", nil, &st, adminTimeout)
		if err == nil {
			err = c.wc.AdminAt(ctx, addr, http.MethodGet, "/api/v1/preheats", nil, &ns.Preheats, adminTimeout)
		}
		if err != nil {
			ns.Error, lastErr = err.Error(), fmt.Errorf("supernode at %s: %w", addr, err)
		} else {
			ns.Up, ns.Status = true, &st
			live = append(live, addr)
		}
		cs.Supernodes = append(cs.Supernodes, ns)
	}
	if len(live) == 0 {
		return nil, lastErr
	}
	peers := map[string]*mergedPeer{}
	for _, ns := range cs.Supernodes {
		if !ns.Up {
			continue
		}
		for _, t := range ns.Status.Tasks {
			owner := wire.HRWOwner(t.TaskID, live)
			cs.Owner[t.TaskID] = owner
			cs.Tasks = append(cs.Tasks, ownedTask{Supernode: ns.Addr, Owner: owner == ns.Addr, TaskStatus: t})
		}
		for _, p := range ns.Status.Peers {
			m := peers[p.PeerID]
			if m == nil {
				m = &mergedPeer{PeerStatus: p}
				m.Tasks = 0
				peers[p.PeerID] = m
			}
			m.Tasks += p.Tasks
			m.Failures = max(m.Failures, p.Failures)
			m.Isolated = m.Isolated || p.Isolated
			if p.Reason != "" {
				m.Reason = p.Reason
			}
			m.Supernodes = append(m.Supernodes, ns.Addr)
		}
	}
	sort.SliceStable(cs.Tasks, func(i, j int) bool { return cs.Tasks[i].TaskID < cs.Tasks[j].TaskID })
	for _, m := range peers {
		cs.Peers = append(cs.Peers, *m)
	}
	sort.Slice(cs.Peers, func(i, j int) bool { return cs.Peers[i].PeerID < cs.Peers[j].PeerID })
	return cs, nil
}

func printStatus(out io.Writer, cs *clusterStatus) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SUPERNODE\tNAME\tUP\tUPTIME\tTASKS\tPEERS\tPREHEATS")
	for _, ns := range cs.Supernodes {
		if !ns.Up {
			fmt.Fprintf(tw, "%s\t-\tno\t-\t-\t-\t-\t(%s)\n", ns.Addr, ns.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\tyes\t%s\t%d\t%d\t%d\n", ns.Addr, ns.Status.Supernode, ns.Status.Uptime, ns.Status.TotalTasks, ns.Status.TotalPeers, len(ns.Preheats))
	}
	if len(cs.Tasks) > 0 {
		fmt.Fprintln(tw, "\nTASK\tSUPERNODE\tOWNER\tSTATE\tSIZE\tSEED\tFROM ORIGIN\tSERVED\tPEERS\tURL")
		for _, t := range cs.Tasks {
			owner := ""
			if t.Owner {
				owner = "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%d (%d done)\t%s\n", short(t.TaskID), t.Supernode, owner, t.State,
				ratelimit.HumanBytes(t.Length), t.SeedPieces, t.NumPieces, ratelimit.HumanBytes(t.BytesFromOrigin),
				ratelimit.HumanBytes(t.BytesServed), t.Peers, t.PeersDone, t.URL)
		}
	}
	if len(cs.Peers) > 0 {
		fmt.Fprintln(tw, "\nPEER\tADDR\tTASKS\tFAILURES\tISOLATED\tSUPERNODES")
		for _, p := range cs.Peers {
			iso := "no"
			if p.Isolated {
				iso = "yes: " + p.Reason
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\n", p.PeerID, p.Addr, p.Tasks, p.Failures, iso, len(p.Supernodes))
		}
	}
	first := true
	for _, ns := range cs.Supernodes {
		for _, p := range ns.Preheats {
			if first {
				fmt.Fprintln(tw, "\nPREHEAT\tSUPERNODE\tSTATE\tTYPE\tBLOBS\tPRESENT\tTRIGGER\tURL")
				first = false
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s/%s\t%s\t%s\n", p.ID, ns.Addr, p.State, p.Type, len(p.Blobs),
				ratelimit.HumanBytes(p.Present), ratelimit.HumanBytes(p.Length), p.Trigger, p.URL)
		}
	}
	tw.Flush()
}
