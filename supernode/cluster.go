package supernode

// The cluster view: a supernode told about the other supernodes
// (Config.Cluster, --cluster) shows them on its dashboard and sends each
// blob of an image preheat to the blob's owner.
//
//	GET /api/v1/dashboard              this supernode and every other member
//	                                   (fetched with ?scope=local; a member
//	                                   that does not answer is shown as down)
//	GET /api/v1/tasks/{id}/pieces      asked of the members when the task is
//	                                   not here (?scope=local: never)
//
// Members are reached with wire.Client (DNS names resolved as peers do),
// authenticated with the admin token, else the cluster token, over TLS
// when configured.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/supernode/dashboard"
	"github.com/damselfly-p2p/damselfly/wire"
)

// Cluster calls.
const (
	clusterTimeout = 2 * time.Second // one member's dashboard or piece map
	scopeLocal     = "local"         // ?scope=: this supernode only
)

// clusterView knows the other supernodes; client is nil without any.
type clusterView struct {
	self   string
	client *wire.Client
}

func newClusterView(cfg Config) (*clusterView, error) {
	c := &clusterView{self: cfg.AdvertiseAddr}
	var others []string
	for _, a := range cfg.Cluster {
		if a != "" && a != cfg.AdvertiseAddr {
			others = append(others, a)
		}
	}
	if len(others) == 0 {
		return c, nil
	}
	client, err := wire.NewClient(others, wire.WithClusterToken(cfg.ClusterToken), wire.WithAdminToken(cfg.AdminToken),
		wire.WithTLS(cfg.ClusterTLS))
	if err != nil {
		return nil, fmt.Errorf("cluster members: %w", err)
	}
	c.client = client
	return c, nil
}

// others returns the other members' addresses (names resolved), sorted.
func (c *clusterView) others(ctx context.Context) []string {
	if c.client == nil {
		return nil
	}
	return slices.DeleteFunc(c.client.Members(ctx), func(a string) bool { return a == c.self })
}

// order is every member, this one included, in taskID's HRW order: the
// first is the task's owner, as peers route it.
func (c *clusterView) order(ctx context.Context, taskID string) []string {
	return wire.HRWOrder(taskID, append(c.others(ctx), c.self))
}

// localOnly reports whether a request asks for this supernode alone.
func localOnly(r *http.Request) bool { return r.URL.Query().Get("scope") == scopeLocal }

// withMembers adds the other members' nodes to doc, fetched in parallel.
func (s *Supernode) withMembers(ctx context.Context, doc dashboard.Cluster) dashboard.Cluster {
	others := s.cluster.others(ctx)
	if len(others) == 0 {
		return doc
	}
	nodes := make([]dashboard.Node, len(others))
	var wg sync.WaitGroup
	for i, addr := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i] = s.memberNode(ctx, addr)
		}()
	}
	wg.Wait()
	doc.Nodes = append(doc.Nodes, nodes...)
	doc.Totals = dashboard.Totals{}
	doc.History = nil
	for _, n := range doc.Nodes {
		doc.Totals.Add(n.Totals)
		doc.History = addSeries(doc.History, n.History)
	}
	if doc.History == nil {
		doc.History = []float64{}
	}
	return doc
}

// memberNode is addr's own node of its dashboard, or a node marked down.
func (s *Supernode) memberNode(ctx context.Context, addr string) dashboard.Node {
	ctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	var doc dashboard.Cluster
	err := s.cluster.client.AdminAt(ctx, addr, http.MethodGet, dashboard.SummaryPath+"?scope="+scopeLocal, nil, &doc, clusterTimeout)
	if err == nil && len(doc.Nodes) > 0 {
		n := doc.Nodes[0] // ?scope=local: its own node only
		if n.Supernode == "" {
			n.Supernode = addr
		}
		return n
	}
	if err == nil {
		err = errors.New("no node in its answer")
	}
	s.log.WithField("member", addr).WithError(err).Debug("dashboard: cluster member did not answer")
	return dashboard.Node{Supernode: addr, Down: true, Error: fmt.Sprintf("fetch dashboard of %s: %v", addr, err),
		Tasks: []dashboard.Task{}, Peers: []dashboard.Peer{}, Preheats: []wire.PreheatStatus{}, History: []float64{}}
}

// addSeries adds b to a, aligned at their ends (the newest samples).
func addSeries(a, b []float64) []float64 {
	if len(b) > len(a) {
		a, b = b, a
	}
	out := slices.Clone(a)
	off := len(a) - len(b)
	for i, v := range b {
		out[off+i] += v
	}
	return out
}

// memberPieces asks the other members for a task's piece map, for a task
// this supernode does not have.
func (s *Supernode) memberPieces(ctx context.Context, id string) (dashboard.PieceMap, bool) {
	var m dashboard.PieceMap
	for _, addr := range s.cluster.order(ctx, id) {
		if addr == s.cluster.self {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, clusterTimeout)
		err := s.cluster.client.AdminAt(cctx, addr, http.MethodGet, "/api/v1/tasks/"+id+"/pieces?scope="+scopeLocal, nil, &m, clusterTimeout)
		cancel()
		if err == nil {
			return m, true
		}
	}
	return m, false
}

// warmAtOwner makes the owner of t's task hold it: this seed when it is
// the owner, else a file preheat sent to the owner, followed until it
// finishes. An owner that cannot be reached is passed over for the next in
// the task's order, as peers do.
func (p *preheater) warmAtOwner(ctx context.Context, t *preheatTarget, header http.Header) error {
	c := p.s.cluster
	if c.client == nil {
		return p.warm(ctx, t, header)
	}
	var errs []error
	for _, addr := range c.order(ctx, t.taskID) {
		if addr == c.self {
			return p.warm(ctx, t, header)
		}
		err := p.warmAt(ctx, addr, t, header)
		if err == nil || !errors.Is(err, wire.ErrUnreachable) || ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// warmAt sends a file preheat of t to the supernode at addr and waits for
// it to finish.
func (p *preheater) warmAt(ctx context.Context, addr string, t *preheatTarget, header http.Header) error {
	c := p.s.cluster.client
	req := wire.PreheatRequest{Type: wire.PreheatFile, URL: t.url, Digest: t.digest, Headers: header}
	var st wire.PreheatStatus
	if err := c.AdminAt(ctx, addr, http.MethodPost, "/api/v1/preheats", &req, &st, 30*time.Second); err != nil {
		return fmt.Errorf("preheat at owner %s: %w", addr, err)
	}
	p.log.WithFields(map[string]any{"owner": addr, "preheat": st.ID, "task": t.taskID[:12]}).Info("preheat: blob sent to its owner")
	tick := time.NewTicker(preheatPoll)
	defer tick.Stop()
	for {
		switch st.State {
		case wire.PreheatSuccess:
			return nil
		case wire.PreheatFailed:
			return fmt.Errorf("preheat at owner %s: %s", addr, st.Error)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := c.AdminAt(ctx, addr, http.MethodGet, "/api/v1/preheats/"+st.ID, nil, &st, 10*time.Second); err != nil {
			return fmt.Errorf("follow preheat %s at owner %s: %w", st.ID, addr, err)
		}
	}
}
