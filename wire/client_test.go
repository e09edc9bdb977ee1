package wire

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/trust"
)

// fakeSupernode records the calls it gets and answers them like a
// supernode that knows every task and peer (or none, when forgetful).
type fakeSupernode struct {
	t    *testing.T
	name string
	srv  *httptest.Server

	mu        sync.Mutex
	calls     []string          // "path task"
	auth      []string          // Authorization of each peer call
	announced map[string]bool   // task IDs announced here
	known     map[string]bool   // peers this supernode knows
	issue     bool              // answer a PeerCredentialHeader
	requireAu bool              // refuse sync without this supernode's credential
	answers   map[string]string // path -> error code to answer
}

func newFake(t *testing.T, name string) *fakeSupernode {
	f := &fakeSupernode{t: t, name: name, announced: map[string]bool{}, known: map[string]bool{}, answers: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSupernode) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeSupernode) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.Write([]byte("ok\n"))
		return
	}
	var body struct {
		PeerID string          `json:"peerID"`
		TaskID string          `json:"taskID"`
		Tasks  []AnnouncedTask `json:"tasks"`
	}
	json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, strings.TrimSpace(r.URL.Path+" "+body.TaskID))
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	for _, t := range body.Tasks {
		f.announced[t.TaskID] = true
	}
	if f.requireAu && r.Header.Get("Authorization") != "Bearer cred-"+f.name {
		claim := strings.HasSuffix(r.URL.Path, "/register") || strings.HasSuffix(r.URL.Path, "/announce")
		if !claim || r.Header.Get("Authorization") != "Bearer "+testClusterToken {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(ErrorResponse{Code: CodeUnauthorized, Message: "no"})
			return
		}
	}
	if f.issue {
		w.Header().Set(PeerCredentialHeader, "cred-"+f.name)
	}
	if code := f.answers[r.URL.Path]; code != "" {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(ErrorResponse{Code: code, Message: code})
		return
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/register"):
		json.NewEncoder(w).Encode(RegisterResponse{TaskID: body.TaskID, Length: 1, PieceSize: 1, Digests: []string{""}})
	case strings.HasSuffix(r.URL.Path, "/sync"):
		json.NewEncoder(w).Encode(SyncResponse{})
	case strings.HasSuffix(r.URL.Path, "/status"):
		json.NewEncoder(w).Encode(Status{Supernode: f.name})
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (f *fakeSupernode) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// cluster starts n fake supernodes and a client of them.
func cluster(t *testing.T, n int, opts ...Option) ([]*fakeSupernode, map[string]*fakeSupernode, *Client) {
	var fakes []*fakeSupernode
	byAddr := map[string]*fakeSupernode{}
	var addrs []string
	for i := range n {
		f := newFake(t, fmt.Sprint("sn", i))
		fakes = append(fakes, f)
		byAddr[f.addr()] = f
		addrs = append(addrs, f.addr())
	}
	c, err := NewClient(addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return fakes, byAddr, c
}

const testClusterToken = "cluster-token-for-wire-tests-0123456789"

func clusterSecret(t *testing.T) trust.Secret {
	s, err := trust.NewSecret(testClusterToken)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestClientRoutesTasksToOwner(t *testing.T) {
	_, byAddr, c := cluster(t, 3)
	ctx := context.Background()
	members := c.Members(ctx)
	for i := range 30 {
		id := fmt.Sprintf("%064d", i)
		if _, err := c.Register(ctx, &RegisterRequest{PeerID: "p", TaskID: id, URL: "http://o/x"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Sync(ctx, &SyncRequest{PeerID: "p", TaskID: id}); err != nil {
			t.Fatal(err)
		}
		owner := HRWOwner(id, members)
		for addr, f := range byAddr {
			calls := f.got()
			has := slices.Contains(calls, "/api/v1/tasks/register "+id) && slices.Contains(calls, "/api/v1/tasks/sync "+id)
			if has != (addr == owner) {
				t.Fatalf("task %d: %s got its calls: %v, owner is %s", i, addr, has, owner)
			}
		}
	}
}

func TestClientFailsOverAndTakesBack(t *testing.T) {
	fakes, _, c := cluster(t, 3, WithIntervals(0, 1)) // probe at once
	ctx := context.Background()
	id := strings.Repeat("ab", 32)
	order := HRWOrder(id, c.Members(ctx))
	var owner, next *fakeSupernode
	for _, f := range fakes {
		switch f.addr() {
		case order[0]:
			owner = f
		case order[1]:
			next = f
		}
	}
	if _, err := c.Register(ctx, &RegisterRequest{PeerID: "p", TaskID: id, URL: "http://o/x"}); err != nil {
		t.Fatal(err)
	}
	// The owner dies: its listener closes, connections are refused.
	ownerAddr := owner.addr()
	owner.srv.Close()
	if _, err := c.Sync(ctx, &SyncRequest{PeerID: "p", TaskID: id}); err != nil {
		t.Fatalf("sync after the owner died: %v", err)
	}
	if !slices.Contains(next.got(), "/api/v1/tasks/sync "+id) {
		t.Fatalf("sync did not go to the next owner %s: %v", next.addr(), next.got())
	}
	if c.Live(ownerAddr) {
		t.Fatal("dead owner still marked live")
	}
	// The heartbeat says the task moved, so the peer announces again,
	// which reaches the next owner.
	if err := c.Heartbeat(ctx, &HeartbeatRequest{PeerID: "p"}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	// The owner comes back on the same address.
	l, err := net.Listen("tcp", ownerAddr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", ownerAddr, err)
	}
	back := &fakeSupernode{t: t, name: "back", announced: map[string]bool{}, known: map[string]bool{}, answers: map[string]string{}}
	back.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(back.serve)}}
	back.srv.Start()
	t.Cleanup(back.srv.Close)
	c.order(ctx, id)         // starts the probe
	for !c.Live(ownerAddr) { // the probe marks it up once it answers
		time.Sleep(time.Millisecond)
		c.order(ctx, id)
	}
	err = c.Heartbeat(ctx, &HeartbeatRequest{PeerID: "p"})
	if !IsCode(err, CodeUnknownPeer) {
		t.Fatalf("heartbeat after the owner came back: %v, want unknown_peer (task moved back)", err)
	}
	if err := c.Announce(ctx, &AnnounceRequest{PeerID: "p", Tasks: []AnnouncedTask{{TaskID: id}}}); err != nil {
		t.Fatal(err)
	}
	if !back.announced[id] {
		t.Fatalf("task not announced to its returning owner: %v", back.got())
	}
	if _, err := c.Sync(ctx, &SyncRequest{PeerID: "p", TaskID: id}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(back.got(), "/api/v1/tasks/sync "+id) {
		t.Fatalf("sync did not go back to the owner: %v", back.got())
	}
}

func TestClientAnnounceSplitsByOwner(t *testing.T) {
	_, byAddr, c := cluster(t, 3)
	ctx := context.Background()
	var tasks []AnnouncedTask
	for i := range 60 {
		tasks = append(tasks, AnnouncedTask{TaskID: fmt.Sprintf("%064d", i)})
	}
	if err := c.Announce(ctx, &AnnounceRequest{PeerID: "p", Tasks: tasks}); err != nil {
		t.Fatal(err)
	}
	members := c.Members(ctx)
	for _, tk := range tasks {
		owner := HRWOwner(tk.TaskID, members)
		for addr, f := range byAddr {
			if f.announced[tk.TaskID] != (addr == owner) {
				t.Fatalf("task %s announced to %s: %v; owner %s", tk.TaskID[:8], addr, f.announced[tk.TaskID], owner)
			}
		}
	}
	// Nothing moved: the heartbeat goes to every supernode and succeeds.
	if err := c.Heartbeat(ctx, &HeartbeatRequest{PeerID: "p"}); err != nil {
		t.Fatal(err)
	}
	for addr, f := range byAddr {
		if !slices.Contains(f.got(), "/api/v1/peers/heartbeat") {
			t.Errorf("%s got no heartbeat", addr)
		}
	}
}

func TestClientCredentialPerSupernode(t *testing.T) {
	fakes, _, c := cluster(t, 2, WithClusterToken(clusterSecret(t)))
	ctx := context.Background()
	for _, f := range fakes {
		f.issue, f.requireAu = true, true
	}
	// One task per supernode.
	var ids []string
	members := c.Members(ctx)
	for i := 0; len(ids) < 2; i++ {
		id := fmt.Sprintf("%064d", i)
		if HRWOwner(id, members) == members[len(ids)] {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		if _, err := c.Register(ctx, &RegisterRequest{PeerID: "p", TaskID: id, URL: "http://o/x"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Sync(ctx, &SyncRequest{PeerID: "p", TaskID: id}); err != nil {
			t.Fatalf("sync with the credential of the owner: %v", err)
		}
	}
	for _, f := range fakes {
		f.mu.Lock()
		last := f.auth[len(f.auth)-1]
		f.mu.Unlock()
		if last != "Bearer cred-"+f.name {
			t.Errorf("%s: last call carried %q, want its own credential", f.name, last)
		}
	}
	// A supernode that never issued a credential looks, to the peer, as
	// one that does not know it: the peer registers there.
	fresh := newFake(t, "fresh")
	fresh.requireAu = true
	c2, err := NewClient([]string{fresh.addr()}, WithClusterToken(clusterSecret(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Sync(ctx, &SyncRequest{PeerID: "p", TaskID: ids[0]}); !IsCode(err, CodeUnknownPeer) {
		t.Fatalf("sync without a credential: %v, want unknown_peer", err)
	}
}

func TestClientResolvesNames(t *testing.T) {
	tests := []struct {
		name    string
		resolve []string
		err     error
		want    int
	}{
		{"three addresses", []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, nil, 3},
		{"one address", []string{"10.0.0.1"}, nil, 1},
		{"lookup fails", nil, fmt.Errorf("no such host"), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient([]string{"sn.example:8002"}, WithResolver(func(context.Context, string) ([]string, error) {
				return tc.resolve, tc.err
			}))
			if err != nil {
				t.Fatal(err)
			}
			got := c.Members(context.Background())
			if len(got) != tc.want {
				t.Fatalf("members %v, want %d", got, tc.want)
			}
			if tc.err == nil {
				for _, m := range got {
					if !strings.HasSuffix(m, ":8002") || strings.HasPrefix(m, "sn.example") {
						t.Errorf("member %q is not an address of the name", m)
					}
				}
			}
		})
	}
	// Literal addresses are never looked up.
	c, err := NewClient([]string{"127.0.0.1:1", "localhost:2"}, WithResolver(func(context.Context, string) ([]string, error) {
		t.Error("lookup of a literal address")
		return nil, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Members(context.Background()); len(got) != 2 {
		t.Fatalf("members %v", got)
	}
}
