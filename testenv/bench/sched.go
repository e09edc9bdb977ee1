package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/trust/egress"
	"github.com/damselfly-p2p/damselfly/wire"
)

// SchedulerConfig configures the scheduler-scale scenario.
type SchedulerConfig struct {
	// Peers is how many simulated peers register (10,000).
	Peers int `json:"peers"`
	// Clients is the number of concurrent keep-alive HTTP clients (64).
	Clients int `json:"clients"`
	// FileSize is the origin file's size; its piece count is what every
	// peer reports (16 MiB: 16 pieces of 1 MiB).
	FileSize int64 `json:"fileSize"`
	// PiecesPerSync is how many pieces one sync reports (4); the last sync
	// of a peer also says Done.
	PiecesPerSync int `json:"piecesPerSync"`
	// Timeout bounds each phase (0: 5 minutes).
	Timeout time.Duration `json:"timeoutNs"`
}

// SchedulerReport is the scheduler scenario's result.
type SchedulerReport struct {
	Config    SchedulerConfig `json:"config"`
	NumPieces int             `json:"numPieces"`
	// Registrations and RegisterSec: registrations done and the time they
	// took; RegistrationsPerSec is their ratio.
	Registrations       int     `json:"registrations"`
	RegisterSec         float64 `json:"registerSec"`
	RegistrationsPerSec float64 `json:"registrationsPerSec"`
	// RegisterLatency summarizes one registration's latency, in seconds.
	RegisterLatency Summary `json:"registerLatency"`
	// Syncs, PieceReports (pieces in Finished lists) and SyncSec describe
	// the reporting phase.
	Syncs              int     `json:"syncs"`
	PieceReports       int     `json:"pieceReports"`
	SyncSec            float64 `json:"syncSec"`
	SyncsPerSec        float64 `json:"syncsPerSec"`
	PieceReportsPerSec float64 `json:"pieceReportsPerSec"`
	// SyncLatency summarizes one sync's latency, in seconds.
	SyncLatency Summary `json:"syncLatency"`
	// Heap* are runtime.MemStats.HeapAlloc after a GC: before any peer,
	// after the registrations and after the reports. BytesPerPeer is the
	// growth at the end over the number of peers.
	HeapBefore        uint64  `json:"heapBefore"`
	HeapAfterRegister uint64  `json:"heapAfterRegister"`
	HeapAfter         uint64  `json:"heapAfter"`
	BytesPerPeer      float64 `json:"bytesPerPeer"`
	// PeersKnown is the supernode's peer count at the end.
	PeersKnown int `json:"peersKnown"`
	// Errors counts failed requests.
	Errors   int      `json:"errors"`
	ErrorMsg []string `json:"errorMsgs,omitempty"`
	Targets  []Target `json:"targets"`
}

// RunScheduler measures the supernode's control plane: cfg.Peers simulated
// peers register for one task and then report all its pieces in syncs,
// through cfg.Clients keep-alive HTTP clients, against one supernode served
// in this process over a real loopback listener (so that its heap can be
// measured). Request bodies are encoded before the clock starts.
func RunScheduler(ctx context.Context, env *Env, cfg SchedulerConfig) (*SchedulerReport, error) {
	if cfg.Peers <= 0 {
		cfg.Peers = 10000
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 64
	}
	if cfg.FileSize <= 0 {
		cfg.FileSize = 16 * MiB
	}
	if cfg.PiecesPerSync <= 0 {
		cfg.PiecesPerSync = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	rep := &SchedulerReport{Config: cfg, NumPieces: manifest.NewLayout(cfg.FileSize).NumPieces()}
	tb, closeScope, err := env.Scope()
	if err != nil {
		return rep, err
	}
	defer closeScope()
	const name = "sched.bin"
	var origin *testenv.Origin
	var dataDir string
	if err := guard(func() error {
		origin = testenv.NewOrigin(tb)
		origin.AddRandom(name, cfg.FileSize, 3)
		dataDir = tb.TempDir()
		return nil
	}); err != nil {
		return rep, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return rep, err
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.SetLevel(logrus.WarnLevel)
	policy, err := egress.New(egress.Options{Allow: []string{origin.Addr()}})
	if err != nil {
		ln.Close()
		return rep, fmt.Errorf("scheduler: origin policy: %w", err)
	}
	sn, err := supernode.New(supernode.Config{DataDir: dataDir, AdvertiseAddr: ln.Addr().String(), Log: log, Egress: policy,
		RegisterRate: -1}) // the per-client limiter would refuse a simulated swarm from one address
	if err != nil {
		ln.Close()
		return rep, err
	}
	srv := &http.Server{Handler: sn.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	defer func() {
		srv.Close()
		<-served
		sn.Close()
	}()
	base := "http://" + ln.Addr().String()
	url := origin.URL(name)

	tr := &http.Transport{MaxIdleConns: cfg.Clients, MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: cfg.Clients,
		IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	// Create the task and let the seed finish before measuring.
	var first wire.RegisterResponse
	if err := postJSON(ctx, client, base+"/api/v1/tasks/register", mustJSON(wire.RegisterRequest{PeerID: "warmup",
		Host: wire.Host{Hostname: "warmup", UploadAddr: "127.0.0.1:1"}, URL: url}), &first); err != nil {
		return rep, fmt.Errorf("scheduler: warm-up registration: %w", err)
	}
	if err := waitSeedDone(ctx, client, base, first.TaskID, time.Minute); err != nil {
		return rep, err
	}
	if err := postJSON(ctx, client, base+"/api/v1/peers/leave", mustJSON(wire.LeaveRequest{PeerID: "warmup"}), nil); err != nil {
		return rep, err
	}
	taskID := first.TaskID
	np := len(first.Digests)
	rep.NumPieces = np

	// Encode every body up front.
	regs := make([][]byte, cfg.Peers)
	var syncs [][]byte
	var syncPieces []int
	for i := range regs {
		id := fmt.Sprintf("bench-peer-%05d", i)
		regs[i] = mustJSON(wire.RegisterRequest{PeerID: id, URL: url, TaskID: taskID,
			Host: wire.Host{Hostname: fmt.Sprintf("host%05d", i), UploadAddr: fmt.Sprintf("127.0.%d.%d:65002", 1+i/250%250, 1+i%250),
				UploadSlots: 8}})
		for lo := 0; lo < np; lo += cfg.PiecesPerSync {
			hi := min(lo+cfg.PiecesPerSync, np)
			fin := make([]int, 0, hi-lo)
			for k := lo; k < hi; k++ {
				fin = append(fin, k)
			}
			syncs = append(syncs, mustJSON(wire.SyncRequest{PeerID: id, TaskID: taskID, Finished: fin,
				KnownDigests: np, Done: hi == np}))
			syncPieces = append(syncPieces, hi-lo)
		}
	}
	// Syncs are sent round by round (every peer's first batch, then every
	// peer's second, ...), as a swarm downloading together would.
	order := make([]int, 0, len(syncs))
	per := (np + cfg.PiecesPerSync - 1) / cfg.PiecesPerSync
	for round := 0; round < per; round++ {
		for p := 0; p < cfg.Peers; p++ {
			order = append(order, p*per+round)
		}
	}

	rep.HeapBefore = heapAfterGC()
	env.Logf("scheduler: %d registrations with %d clients", cfg.Peers, cfg.Clients)
	regLat, regSec, regErrs := hammer(ctx, client, fixedURL(base+"/api/v1/tasks/register"), regs, nil, cfg.Clients, cfg.Timeout)
	rep.Registrations = cfg.Peers - len(regErrs)
	rep.RegisterSec = regSec
	rep.RegistrationsPerSec = float64(rep.Registrations) / regSec
	rep.RegisterLatency = Summarize(regLat)
	tr.CloseIdleConnections()
	rep.HeapAfterRegister = heapAfterGC()

	env.Logf("scheduler: %d syncs reporting %d pieces each (at most)", len(syncs), cfg.PiecesPerSync)
	syncLat, syncSec, syncErrs := hammer(ctx, client, fixedURL(base+"/api/v1/tasks/sync"), syncs, order, cfg.Clients, cfg.Timeout)
	rep.Syncs = len(syncs) - len(syncErrs)
	failed := map[int]bool{}
	for _, e := range syncErrs {
		failed[e.index] = true
	}
	for i, n := range syncPieces {
		if !failed[i] {
			rep.PieceReports += n
		}
	}
	rep.SyncSec = syncSec
	rep.SyncsPerSec = float64(rep.Syncs) / syncSec
	rep.PieceReportsPerSec = float64(rep.PieceReports) / syncSec
	rep.SyncLatency = Summarize(syncLat)
	tr.CloseIdleConnections()
	rep.HeapAfter = heapAfterGC()
	rep.BytesPerPeer = (float64(rep.HeapAfter) - float64(rep.HeapBefore)) / float64(cfg.Peers)
	runtime.KeepAlive(regs)
	runtime.KeepAlive(syncs)

	var st wire.Status
	if err := getJSONCtx(ctx, client, base+"/api/v1/status", &st); err == nil {
		rep.PeersKnown = st.TotalPeers
	}
	for _, e := range append(regErrs, syncErrs...) {
		rep.Errors++
		if len(rep.ErrorMsg) < 5 {
			rep.ErrorMsg = append(rep.ErrorMsg, e.err.Error())
		}
	}
	rep.Targets = SchedulerTargets(rep)
	if rep.Errors > 0 {
		return rep, fmt.Errorf("scheduler: %d requests failed, e.g. %s", rep.Errors, rep.ErrorMsg[0])
	}
	return rep, nil
}

type indexedErr struct {
	index int
	err   error
}

// fixedURL sends every body to url.
func fixedURL(url string) func(int) string { return func(int) string { return url } }

// hammer POSTs bodies (in order, if given) from n workers, body i to
// url(i), and returns each successful request's latency in seconds, the
// wall time and the failures.
func hammer(ctx context.Context, client *http.Client, url func(int) string, bodies [][]byte, order []int, n int, timeout time.Duration) ([]float64, float64, []indexedErr) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if order == nil {
		order = make([]int, len(bodies))
		for i := range order {
			order[i] = i
		}
	}
	lat := make([]float64, len(order))
	var next atomic.Int64
	var mu sync.Mutex
	var errs []indexedErr
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(order) {
					return
				}
				i := order[k]
				t := time.Now()
				err := postJSON(ctx, client, url(i), bodies[i], nil)
				lat[k] = time.Since(t).Seconds()
				if err != nil {
					lat[k] = -1
					mu.Lock()
					errs = append(errs, indexedErr{i, err})
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	ok := lat[:0]
	for _, l := range lat {
		if l >= 0 {
			ok = append(ok, l)
		}
	}
	return ok, wall, errs
}

func postJSON(ctx context.Context, client *http.Client, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func getJSONCtx(ctx context.Context, client *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func waitSeedDone(ctx context.Context, client *http.Client, base, taskID string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var ts wire.TaskStatus
		err := getJSONCtx(ctx, client, base+"/api/v1/tasks/"+taskID, &ts)
		if err == nil && ts.State == "done" {
			return nil
		}
		if err == nil && ts.State == "failed" {
			return fmt.Errorf("scheduler: seed failed: %s", ts.Error)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scheduler: seed not done after %v (last: %+v, %v)", timeout, ts, err)
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// SchedulerTargets checks the scheduler report: >= 5,000 registrations/s.
func SchedulerTargets(rep *SchedulerReport) []Target {
	return []Target{AtLeast(fmt.Sprintf("scheduler >= 5000 registrations/s (%d peers, %d clients)", rep.Config.Peers, rep.Config.Clients),
		rep.RegistrationsPerSec, 5000, "%.0f/s")}
}

// SchedulerTable renders a scheduler report as a table.
func SchedulerTable(rep *SchedulerReport) *Table {
	t := &Table{Title: fmt.Sprintf("scheduler scale (%d peers, %d clients, %d pieces, %d per sync; supernode in-process)",
		rep.Config.Peers, rep.Config.Clients, rep.NumPieces, rep.Config.PiecesPerSync),
		Header: []string{"phase", "requests", "wall", "req/s", "pieces/s", "p50 latency", "p99 latency", "heap after"}}
	t.AddRow("register", rep.Registrations, fmtSec(rep.RegisterSec), fmt.Sprintf("%.0f", rep.RegistrationsPerSec), "-",
		fmtMs(rep.RegisterLatency.P50), fmtMs(rep.RegisterLatency.P99), fmtMiB(int64(rep.HeapAfterRegister)))
	t.AddRow("sync", rep.Syncs, fmtSec(rep.SyncSec), fmt.Sprintf("%.0f", rep.SyncsPerSec), fmt.Sprintf("%.0f", rep.PieceReportsPerSec),
		fmtMs(rep.SyncLatency.P50), fmtMs(rep.SyncLatency.P99), fmtMiB(int64(rep.HeapAfter)))
	t.Notes = append(t.Notes, fmt.Sprintf("heap before %s; supernode memory per peer (heap growth / peers, after GC): %.0f bytes; peers known at end: %d; errors: %d",
		fmtMiB(int64(rep.HeapBefore)), rep.BytesPerPeer, rep.PeersKnown, rep.Errors))
	for _, m := range rep.ErrorMsg {
		t.Notes = append(t.Notes, "error: "+m)
	}
	return t
}

func fmtMs(s float64) string { return fmt.Sprintf("%.2fms", s*1000) }

// SchedulerFleetConfig configures the scheduler scenario's fleet variant.
type SchedulerFleetConfig struct {
	// Supernodes is how many supernodes share the tasks (3).
	Supernodes int `json:"supernodes"`
	// Peers is how many simulated peers register, one task each (30,000).
	Peers int `json:"peers"`
	// Tasks is how many distinct files (task IDs) the peers spread over
	// (1,500), each owned by the supernode wire.HRWOwner picks.
	Tasks int `json:"tasks"`
	// Clients is the number of concurrent keep-alive HTTP clients (64).
	Clients int `json:"clients"`
	// FileSize is each file's size (64 KiB).
	FileSize int64 `json:"fileSize"`
	// Timeout bounds each phase (0: 5 minutes).
	Timeout time.Duration `json:"timeoutNs"`
}

// FleetShare is one supernode's part of the fleet variant.
type FleetShare struct {
	Addr          string  `json:"addr"`
	Tasks         int     `json:"tasks"`
	Registrations int     `json:"registrations"`
	Share         float64 `json:"share"` // of all registrations
	PeersKnown    int     `json:"peersKnown"`
}

// SchedulerFleetReport is the fleet variant's result.
type SchedulerFleetReport struct {
	Config              SchedulerFleetConfig `json:"config"`
	Registrations       int                  `json:"registrations"`
	RegisterSec         float64              `json:"registerSec"`
	RegistrationsPerSec float64              `json:"registrationsPerSec"`
	RegisterLatency     Summary              `json:"registerLatency"`
	Supernodes          []FleetShare         `json:"supernodes"`
	// BusiestOverMean is the busiest supernode's share of registrations
	// over the mean share (1/Supernodes).
	BusiestOverMean float64  `json:"busiestOverMean"`
	Errors          int      `json:"errors"`
	ErrorMsg        []string `json:"errorMsgs,omitempty"`
	Targets         []Target `json:"targets"`
}

// RunSchedulerFleet measures several supernodes sharing the control plane:
// cfg.Peers simulated peers register for cfg.Tasks distinct files, each
// registration sent to its task's owner as peers route it (wire.HRWOwner
// over the supernodes' addresses), through cfg.Clients keep-alive clients.
// The supernodes are served in this process on loopback listeners and
// share its CPUs, so the aggregate rate measures the routing and balance,
// not added hardware. Each task's seed finishes before the clock starts.
func RunSchedulerFleet(ctx context.Context, env *Env, cfg SchedulerFleetConfig) (*SchedulerFleetReport, error) {
	if cfg.Supernodes <= 0 {
		cfg.Supernodes = 3
	}
	if cfg.Peers <= 0 {
		cfg.Peers = 30000
	}
	if cfg.Tasks <= 0 {
		cfg.Tasks = 1500
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 64
	}
	if cfg.FileSize <= 0 {
		cfg.FileSize = 64 << 10
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	rep := &SchedulerFleetReport{Config: cfg}
	tb, closeScope, err := env.Scope()
	if err != nil {
		return rep, err
	}
	defer closeScope()
	var origin *testenv.Origin
	if err := guard(func() error {
		origin = testenv.NewOrigin(tb)
		for k := range cfg.Tasks {
			origin.AddRandom(fmt.Sprintf("fleet-%05d.bin", k), cfg.FileSize, int64(k))
		}
		return nil
	}); err != nil {
		return rep, err
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.SetLevel(logrus.WarnLevel)
	policy, err := egress.New(egress.Options{Allow: []string{origin.Addr()}})
	if err != nil {
		return rep, fmt.Errorf("scheduler fleet: origin policy: %w", err)
	}
	var addrs []string
	for range cfg.Supernodes {
		addr, stop, err := serveBenchSupernode(tb.TempDir(), policy, log)
		if err != nil {
			return rep, fmt.Errorf("scheduler fleet: start supernode: %w", err)
		}
		defer stop()
		addrs = append(addrs, addr)
	}
	tr := &http.Transport{MaxIdleConns: cfg.Clients * cfg.Supernodes, MaxIdleConnsPerHost: cfg.Clients,
		MaxConnsPerHost: cfg.Clients, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	// Each task's owner, and a warm-up registration there.
	owners := make([]string, cfg.Tasks)
	urls := make([]string, cfg.Tasks)
	taskIDs := make([]string, cfg.Tasks)
	perNode := map[string]*FleetShare{}
	for _, a := range addrs {
		perNode[a] = &FleetShare{Addr: a}
	}
	warm := make([][]byte, cfg.Tasks)
	for k := range cfg.Tasks {
		urls[k] = origin.URL(fmt.Sprintf("fleet-%05d.bin", k))
		id, err := manifest.TaskID(urls[k], "", nil)
		if err != nil {
			return rep, fmt.Errorf("scheduler fleet: task ID of %s: %w", urls[k], err)
		}
		taskIDs[k], owners[k] = id, wire.HRWOwner(id, addrs)
		perNode[owners[k]].Tasks++
		warm[k] = mustJSON(wire.RegisterRequest{PeerID: fmt.Sprintf("warmup-%05d", k), URL: urls[k], TaskID: id,
			Host: wire.Host{Hostname: "warmup", UploadAddr: "127.0.0.1:1"}})
	}
	env.Logf("scheduler fleet: %d tasks over %d supernodes: warming the seeds", cfg.Tasks, cfg.Supernodes)
	ownerURL := func(k int) string { return "http://" + owners[k] + "/api/v1/tasks/register" }
	if _, _, errs := hammer(ctx, client, ownerURL, warm, nil, cfg.Clients, cfg.Timeout); len(errs) > 0 {
		return rep, fmt.Errorf("scheduler fleet: warm-up registration: %w", errs[0].err)
	}
	for k := range cfg.Tasks {
		if err := waitSeedDone(ctx, client, "http://"+owners[k], taskIDs[k], time.Minute); err != nil {
			return rep, err
		}
	}

	regs := make([][]byte, cfg.Peers)
	target := make([]string, cfg.Peers)
	for i := range regs {
		k := i % cfg.Tasks
		regs[i] = mustJSON(wire.RegisterRequest{PeerID: fmt.Sprintf("fleet-peer-%05d", i), URL: urls[k], TaskID: taskIDs[k],
			Host: wire.Host{Hostname: fmt.Sprintf("host%05d", i), UploadAddr: fmt.Sprintf("127.0.%d.%d:65002", 1+i/250%250, 1+i%250),
				UploadSlots: 8}})
		target[i] = "http://" + owners[k] + "/api/v1/tasks/register"
	}
	env.Logf("scheduler fleet: %d registrations with %d clients", cfg.Peers, cfg.Clients)
	lat, sec, errs := hammer(ctx, client, func(i int) string { return target[i] }, regs, nil, cfg.Clients, cfg.Timeout)
	failed := map[int]bool{}
	for _, e := range errs {
		failed[e.index] = true
		rep.Errors++
		if len(rep.ErrorMsg) < 5 {
			rep.ErrorMsg = append(rep.ErrorMsg, e.err.Error())
		}
	}
	for i := range regs {
		if !failed[i] {
			perNode[owners[i%cfg.Tasks]].Registrations++
		}
	}
	rep.Registrations = cfg.Peers - len(errs)
	rep.RegisterSec = sec
	rep.RegistrationsPerSec = float64(rep.Registrations) / sec
	rep.RegisterLatency = Summarize(lat)
	busiest := 0
	for _, a := range addrs {
		sh := perNode[a]
		if rep.Registrations > 0 {
			sh.Share = float64(sh.Registrations) / float64(rep.Registrations)
		}
		var st wire.Status
		if err := getJSONCtx(ctx, client, "http://"+a+"/api/v1/status?limit=1", &st); err == nil {
			sh.PeersKnown = st.TotalPeers
		}
		busiest = max(busiest, sh.Registrations)
		rep.Supernodes = append(rep.Supernodes, *sh)
	}
	if rep.Registrations > 0 {
		rep.BusiestOverMean = float64(busiest) / (float64(rep.Registrations) / float64(cfg.Supernodes))
	}
	rep.Targets = SchedulerFleetTargets(rep)
	if rep.Errors > 0 {
		return rep, fmt.Errorf("scheduler fleet: %d registrations failed, e.g. %s", rep.Errors, rep.ErrorMsg[0])
	}
	return rep, nil
}

// serveBenchSupernode serves a supernode on a loopback listener and
// returns its address and a stop function.
func serveBenchSupernode(dataDir string, policy *egress.Policy, log logrus.FieldLogger) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	sn, err := supernode.New(supernode.Config{DataDir: dataDir, AdvertiseAddr: ln.Addr().String(), Log: log, Egress: policy,
		RegisterRate: -1}) // the per-client limiter would refuse a simulated swarm from one address
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	srv := &http.Server{Handler: sn.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	return ln.Addr().String(), func() {
		srv.Close()
		<-served
		sn.Close()
	}, nil
}

// SchedulerFleetTargets checks the fleet report: the busiest supernode's
// share of registrations at most 1.2x the mean share, and the aggregate
// rate at least the single-supernode target.
func SchedulerFleetTargets(rep *SchedulerFleetReport) []Target {
	c := rep.Config
	return []Target{
		AtMost(fmt.Sprintf("scheduler fleet: busiest supernode's share <= 1.2x the mean (%d supernodes, %d tasks)", c.Supernodes, c.Tasks),
			rep.BusiestOverMean, 1.2, "%.3fx"),
		AtLeast(fmt.Sprintf("scheduler fleet >= 5000 registrations/s in aggregate (%d peers, %d clients)", c.Peers, c.Clients),
			rep.RegistrationsPerSec, 5000, "%.0f/s"),
	}
}

// SchedulerFleetTable renders a fleet report as a table.
func SchedulerFleetTable(rep *SchedulerFleetReport) *Table {
	c := rep.Config
	t := &Table{Title: fmt.Sprintf("scheduler fleet (%d supernodes in-process, %d peers over %d tasks routed by HRW, %d clients)",
		c.Supernodes, c.Peers, c.Tasks, c.Clients),
		Header: []string{"supernode", "tasks owned", "registrations", "share", "peers known"}}
	for _, s := range rep.Supernodes {
		t.AddRow(s.Addr, s.Tasks, s.Registrations, fmt.Sprintf("%.1f%%", 100*s.Share), s.PeersKnown)
	}
	t.Notes = append(t.Notes, fmt.Sprintf("aggregate: %d registrations in %s, %.0f/s; p50 %s, p99 %s; busiest/mean %.3f; errors: %d",
		rep.Registrations, fmtSec(rep.RegisterSec), rep.RegistrationsPerSec, fmtMs(rep.RegisterLatency.P50),
		fmtMs(rep.RegisterLatency.P99), rep.BusiestOverMean, rep.Errors))
	for _, m := range rep.ErrorMsg {
		t.Notes = append(t.Notes, "error: "+m)
	}
	return t
}
