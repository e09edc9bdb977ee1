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
	sn, err := supernode.New(supernode.Config{DataDir: dataDir, AdvertiseAddr: ln.Addr().String(), Log: log, Egress: policy})
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
	regLat, regSec, regErrs := hammer(ctx, client, base+"/api/v1/tasks/register", regs, nil, cfg.Clients, cfg.Timeout)
	rep.Registrations = cfg.Peers - len(regErrs)
	rep.RegisterSec = regSec
	rep.RegistrationsPerSec = float64(rep.Registrations) / regSec
	rep.RegisterLatency = Summarize(regLat)
	tr.CloseIdleConnections()
	rep.HeapAfterRegister = heapAfterGC()

	env.Logf("scheduler: %d syncs reporting %d pieces each (at most)", len(syncs), cfg.PiecesPerSync)
	syncLat, syncSec, syncErrs := hammer(ctx, client, base+"/api/v1/tasks/sync", syncs, order, cfg.Clients, cfg.Timeout)
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
		rep.PeersKnown = len(st.Peers)
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

// hammer POSTs bodies (in order, if given) to url from n workers and
// returns each successful request's latency in seconds, the wall time and
// the failures.
func hammer(ctx context.Context, client *http.Client, url string, bodies [][]byte, order []int, n int, timeout time.Duration) ([]float64, float64, []indexedErr) {
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
				err := postJSON(ctx, client, url, bodies[i], nil)
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
