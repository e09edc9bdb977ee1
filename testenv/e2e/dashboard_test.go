//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/supernode/dashboard"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/wire"
)

// chromiumPath is Debian's chromium (make deps installs it).
const chromiumPath = "/usr/bin/chromium"

// TestDashboard opens the supernode's dashboard in headless Chromium while
// a 6-peer swarm downloads a 64 MiB file, and checks the rendered page:
// without a token only the sign-in form shows; after signing in the task
// row appears, its progress rises to complete, the origin-saved figure
// matches the status API, and a peer reported corrupt shows as isolated.
// The page's screenshot is saved to results/dashboard.png.
func TestDashboard(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test skipped: %s not found (apt-get install chromium, or make deps)", chromiumPath)
	}
	bin := bins(t)
	const size = 64 * MiB
	origin := testenv.NewOrigin(t)
	origin.AddRandom("big.bin", size, 17)
	fileURL := origin.URL("big.bin")
	tr := testenv.NewTrust(t, testenv.TrustOptions{ClusterToken: true, AdminToken: true})
	sn := tr.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)

	ctx := browser(t, 5*time.Minute)
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}

	// Without a token: the sign-in form and nothing else.
	run("open the page", chromedp.EmulateViewport(1366, 900), chromedp.Navigate(sn.URL("/?refresh=500")),
		chromedp.WaitVisible(chromedp.CSS("#token")))
	type lockedPage struct {
		AppHidden      bool   `json:"appHidden"`
		Rows           int    `json:"rows"`
		TotalsText     string `json:"totalsText"`
		LoginLabelled  bool   `json:"loginLabelled"`
		FocusedOnToken bool   `json:"focusedOnToken"`
	}
	locked := eval[lockedPage](ctx, t, "inspect the locked page", `({
		appHidden: document.getElementById('app').hidden && getComputedStyle(document.getElementById('app')).display === 'none',
		rows: document.querySelectorAll('tbody tr').length,
		totalsText: Array.from(document.querySelectorAll('.totals .value')).map(d => d.textContent).join(''),
		loginLabelled: document.querySelector('label[for=token]') !== null,
		focusedOnToken: document.activeElement === document.getElementById('token'),
	})`)
	if !locked.AppHidden || locked.Rows != 0 || strings.Trim(locked.TotalsText, "–") != "" {
		t.Fatalf("without a token the page shows data: %+v", locked)
	}
	if !locked.LoginLabelled || !locked.FocusedOnToken {
		t.Errorf("sign-in form not accessible: labelled %v, focused %v", locked.LoginLabelled, locked.FocusedOnToken)
	}

	// The swarm: 6 rate-limited peers that stay to seed, so that the
	// status API still counts their traffic at the end.
	out := t.TempDir()
	for i := range 6 {
		tr.Dfget(t, bin, sn.Addr, fileURL, filepath.Join(out, fmt.Sprintf("f%d", i)),
			"--limit", "8M", "--keep-seeding", "5m", "--data-dir", t.TempDir())
	}

	run("sign in", chromedp.SendKeys(chromedp.CSS("#token"), tr.AdminToken),
		chromedp.Click(chromedp.CSS("#login-form button")), chromedp.WaitVisible(chromedp.CSS("#tasks")))

	// The task row appears; its swarm progress rises to complete.
	var taskID string
	deadline := time.Now().Add(30 * time.Second)
	for taskID == "" && time.Now().Before(deadline) {
		if task := sn.Status(t).Task(fileURL); task != nil {
			taskID = task.TaskID
		}
		time.Sleep(100 * time.Millisecond)
	}
	if taskID == "" {
		t.Fatal("the task never appeared in the status API")
	}
	rowJS := fmt.Sprintf(`(() => {
		const r = document.querySelector('#tasks tr[data-task-id=%q]');
		if (!r) return null;
		return {status: r.querySelector('.task-status').textContent,
			progress: r.querySelector('.swarm-progress progress').value,
			pct: r.querySelector('.swarm-progress .pct').textContent,
			peers: r.querySelector('.task-peers').textContent};
	})()`, taskID)
	type row struct {
		Status   string  `json:"status"`
		Progress float64 `json:"progress"`
		Pct      string  `json:"pct"`
		Peers    string  `json:"peers"`
	}
	var seen []float64
	var last *row
	shotRunning := false
	deadline = time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		r := eval[*row](ctx, t, "read the task row", rowJS)
		if r == nil && len(seen) == 0 && time.Since(deadline.Add(-3*time.Minute)) > 30*time.Second {
			break
		}
		if r != nil && last == nil {
			// Open the task's piece map by keyboard, to watch it fill.
			run("open the piece map", chromedp.Focus(chromedp.CSS(fmt.Sprintf(`#tasks tr[data-task-id=%q] .task-name button`, taskID))),
				chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS("#seed-strip .p")))
		}
		if r != nil {
			last = r
			if len(seen) == 0 || seen[len(seen)-1] != r.Progress {
				seen = append(seen, r.Progress)
			}
			if r.Progress >= 40 && r.Progress < 90 && !shotRunning {
				shotRunning = true
				saveScreenshot(ctx, t, "dashboard-running.png")
			}
			if r.Status == dashboard.StateComplete && r.Progress == 100 {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("swarm progress seen on the page: %v; last row %+v", seen, last)
	if last == nil {
		t.Fatalf("the task row never appeared on the page; page text:\n%s",
			eval[string](ctx, t, "read the page", `document.body.innerText + '\n' + document.querySelector('#tasks tbody').innerHTML`))
	}
	if last.Status != dashboard.StateComplete || last.Progress != 100 || last.Pct != "100 %" || last.Peers != "6 / 6" {
		t.Fatalf("task row never showed the swarm complete: %+v", last)
	}
	rose := false
	for i, v := range seen {
		for _, w := range seen[i+1:] {
			if v > 0 && v < 100 && w > v {
				rose = true
			}
		}
	}
	if !rose {
		t.Errorf("progress never seen rising between 0 and 100 %%: %v", seen)
	}

	// A peer reported corrupt by a peer of the task is shown isolated.
	isolateEvilPeer(t, sn, tr, fileURL, taskID, size)
	var state string
	peerJS := `(() => { const c = document.querySelector('#peers tr[data-peer-id="dash-evil"] .peer-state'); return c ? c.textContent : ''; })()`
	deadline = time.Now().Add(30 * time.Second)
	for !strings.HasPrefix(state, "isolated") && time.Now().Before(deadline) {
		state = eval[string](ctx, t, "read the evil peer's row", peerJS)
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.HasPrefix(state, "isolated") {
		t.Errorf("peer dash-evil shown as %q, want isolated", state)
	}

	// The origin-saved figure is the status API's bytes, as rendered.
	var shown string
	var want float64
	matched := false
	deadline = time.Now().Add(30 * time.Second)
	for !matched && time.Now().Before(deadline) {
		before := savedFromStatus(t, sn)
		shown = eval[string](ctx, t, "read the origin-saved figure", `document.getElementById('total-saved').textContent`)
		after := savedFromStatus(t, sn)
		v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(shown, "%")), 64)
		if err == nil && before == after && !math.IsNaN(before) && math.Abs(v-before) <= 0.05 {
			matched, want = true, before
			break
		}
		want = after
		time.Sleep(300 * time.Millisecond)
	}
	if !matched {
		t.Errorf("origin saved shown as %q, status API says %.2f %%", shown, want)
	}
	t.Logf("origin traffic saved: page %q, status API %.3f %%", shown, want)

	// The piece map (opened above) shows the finished task.
	summary := eval[string](ctx, t, "read the piece map", `document.getElementById('pieces-summary').textContent`)
	if n := manifest.NewLayout(size).NumPieces(); !strings.Contains(summary, fmt.Sprintf("%d pieces", n)) ||
		!strings.Contains(summary, fmt.Sprintf("seed holds %d", n)) {
		t.Errorf("piece map summary %q, want %d pieces all held by the seed", summary, n)
	}
	run("let the page settle", chromedp.Sleep(600*time.Millisecond))
	saveScreenshot(ctx, t, "dashboard.png")
}

// saveScreenshot saves a full-page screenshot as results/NAME (a test
// artifact; results/ is at the module root).
func saveScreenshot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	png := value(ctx, t, "screenshot", chromedp.FullScreenshot(100))
	dir := filepath.Join(moduleRoot(t), "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// eval evaluates js in the page and decodes its value into a T.
func eval[T any](ctx context.Context, t *testing.T, what, js string) T {
	t.Helper()
	return value(ctx, t, what, chromedp.Evaluate[T](js))
}

// value runs an action that returns a value.
func value[T any](ctx context.Context, t *testing.T, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// browser starts headless Chromium for the test and returns its context.
func browser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// savedFromStatus is the origin traffic saved by all tasks, computed from
// GET /api/v1/status as the dashboard defines it.
func savedFromStatus(t *testing.T, sn *testenv.Supernode) float64 {
	t.Helper()
	var peers, seed, orig int64
	for _, task := range sn.Status(t).Tasks {
		peers += task.BytesPeerToPeer
		seed += task.BytesServed
		orig += task.BytesFromOrigin
	}
	if v := dashboard.OriginSavedPercent(peers, seed, orig); v != nil {
		return *v
	}
	return math.NaN()
}

// isolateEvilPeer makes a peer that claims every piece of the task, and a
// second peer of the task that reports it corrupt, both with their own
// credentials: the supernode isolates the first at once.
func isolateEvilPeer(t *testing.T, sn *testenv.Supernode, tr *testenv.Trust, url, taskID string, size int64) {
	t.Helper()
	n := manifest.NewLayout(size).NumPieces()
	all := manifest.NewBitmap(n)
	pieces := make([]int, n)
	for i := range pieces {
		all.Set(i)
		pieces[i] = i
	}
	register := func(id string) string {
		h := apiCall(t, sn, tr, "/api/v1/tasks/register", tr.ClusterToken, wire.RegisterRequest{PeerID: id,
			Host: wire.Host{Hostname: id, UploadAddr: "127.0.0.1:9"}, URL: url}, nil)
		return h.Get(wire.PeerCredentialHeader)
	}
	evil := register("dash-evil")
	apiCall(t, sn, tr, "/api/v1/peers/announce", evil, wire.AnnounceRequest{PeerID: "dash-evil",
		Host:  wire.Host{Hostname: "dash-evil", UploadAddr: "127.0.0.1:9"},
		Tasks: []wire.AnnouncedTask{{TaskID: taskID, Bitmap: all}}}, nil)
	reporter := register("dash-reporter")
	apiCall(t, sn, tr, "/api/v1/tasks/sync", reporter, wire.SyncRequest{PeerID: "dash-reporter", TaskID: taskID,
		Finished: pieces, Done: true, BadParents: []wire.ParentReport{{PeerID: "dash-evil", Reason: wire.ReasonCorrupt}}}, nil)
}

// apiCall POSTs in as JSON with a bearer token and decodes the answer into
// out (if not nil); it fails the test on a non-2xx answer.
func apiCall(t *testing.T, sn *testenv.Supernode, tr *testenv.Trust, path, bearer string, in, out any) http.Header {
	t.Helper()
	body, _ := json.Marshal(in)
	req, err := http.NewRequest(http.MethodPost, sn.URL(path), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	client := tr.HTTPClient(t, 30*time.Second)
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("POST %s: decode: %v", path, err)
		}
	}
	return resp.Header
}

// moduleRoot is the directory holding go.mod, above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", dir)
		}
	}
}
