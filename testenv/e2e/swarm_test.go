//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// TestSwarm20 is the core acceptance test: one supernode and 20 dfget
// processes start together on a 64 MiB random file.
func TestSwarm20(t *testing.T) {
	bin := bins(t)
	const size = 64 * MiB
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("big.bin", size, 1)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	out := t.TempDir()
	procs, _ := startPeers(t, bin, sn.Addr, origin.URL("big.bin"), out, 20)
	waitAll(t, procs, 3*time.Minute)
	var fromPeers, fromSeed int64
	for i, p := range procs {
		assertSHA(t, filepath.Join(out, fmt.Sprintf("f%d", i)), want)
		r := parseResult(t, p)
		fromPeers += r.Peers
		fromSeed += r.Seed
	}
	served := origin.BytesServed("big.bin")
	t.Logf("origin served %d bytes; peers received %d from peers, %d from the supernode (%.0f%% P2P)",
		served, fromPeers, fromSeed, 100*float64(fromPeers)/float64(fromPeers+fromSeed))
	if limit := int64(size) + pieceSize(size); served > limit {
		t.Errorf("origin served %d bytes, want <= %d (file + one piece)", served, limit)
	}
	if fromPeers < fromSeed {
		t.Errorf("only %d of %d bytes came from peers; want at least half", fromPeers, fromPeers+fromSeed)
	}
	if total := fromPeers + fromSeed; total != 20*int64(size) {
		t.Errorf("peers received %d bytes in all, want exactly %d (no piece twice)", total, 20*int64(size))
	}
	st := sn.Status(t)
	if task := st.Task(origin.URL("big.bin")); task == nil || task.BytesFromOrigin != served {
		t.Errorf("status task = %+v, want bytesFromOrigin %d", task, served)
	}
}

// TestKillQuarterOfPeers kills 3 of 12 rate-limited peers mid-transfer; the
// rest complete with correct bytes.
func TestKillQuarterOfPeers(t *testing.T) {
	bin := bins(t)
	const size = 32 * MiB
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", size, 2)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	out := t.TempDir()
	procs, dirs := startPeers(t, bin, sn.Addr, origin.URL("f.bin"), out, 12, "--limit", "6M")
	// Kill the first three once they hold a few pieces.
	for i := 0; i < 3; i++ {
		waitPresent(t, dirs[i], 4, time.Minute)
		procs[i].Kill9()
	}
	waitAll(t, procs[3:], 3*time.Minute)
	for i := 3; i < 12; i++ {
		assertSHA(t, filepath.Join(out, fmt.Sprintf("f%d", i)), want)
	}
	for i := 0; i < 3; i++ {
		if _, err := os.Stat(filepath.Join(out, fmt.Sprintf("f%d", i))); err == nil {
			t.Errorf("killed peer %d left an output file", i)
		}
	}
}

// TestCorruptPeerIsolated puts a peer that serves garbage for every piece
// into the swarm: every download is still correct and the peer is isolated.
func TestCorruptPeerIsolated(t *testing.T) {
	bin := bins(t)
	const size = 16 * MiB
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", size, 3)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	evil := startEvilPeer(t, sn.Addr, origin.URL("f.bin"))
	out := t.TempDir()
	procs, _ := startPeers(t, bin, sn.Addr, origin.URL("f.bin"), out, 6)
	waitAll(t, procs, 2*time.Minute)
	for i := range procs {
		assertSHA(t, filepath.Join(out, fmt.Sprintf("f%d", i)), want)
	}
	evil.mu.Lock()
	served := evil.served
	evil.mu.Unlock()
	if served == 0 {
		t.Fatal("no peer ever asked the corrupt peer for a piece: the test proves nothing")
	}
	isolated := false
	for _, p := range sn.Status(t).Peers {
		if p.PeerID == evil.id {
			isolated = p.Isolated
		}
	}
	if !isolated {
		t.Fatalf("corrupt peer not isolated; status: %+v", sn.Status(t).Peers)
	}
	t.Logf("corrupt peer served %d bytes of garbage before isolation; all %d downloads correct", served, len(procs))
}

// TestResumeAfterKill kills a dfget at about half and reruns it: it
// completes, and the rerun fetches only what was missing plus a few pieces.
func TestResumeAfterKill(t *testing.T) {
	bin := bins(t)
	const size = 64 * MiB
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", size, 4)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "f")
	args := []string{"--limit", "16M", "--data-dir", dir}
	first := testenv.Dfget(t, bin, sn.Addr, origin.URL("f.bin"), out, args...)
	half := int(size / pieceSize(size) / 2)
	waitPresent(t, dir, half, time.Minute)
	first.Kill9()
	if _, err := os.Stat(out); err == nil {
		t.Fatal("output file exists after the kill: not atomic")
	}
	second := testenv.Dfget(t, bin, sn.Addr, origin.URL("f.bin"), out, args...)
	waitOK(t, second, 2*time.Minute)
	assertSHA(t, out, want)
	r := parseResult(t, second)
	fetched := r.Peers + r.Seed + r.Origin
	slack := 4 * pieceSize(size)
	t.Logf("rerun: already present %d, fetched %d (file %d)", r.Reused, fetched, size)
	if r.Reused < int64(half)*pieceSize(size) {
		t.Errorf("rerun reused %d bytes, want >= %d (what the first run held)", r.Reused, int64(half)*pieceSize(size))
	}
	if fetched > size-r.Reused+slack {
		t.Errorf("rerun fetched %d bytes, want <= file - present + 4 pieces = %d", fetched, size-r.Reused+slack)
	}
	if served := origin.BytesServed("f.bin"); served > size+pieceSize(size) {
		t.Errorf("origin served %d bytes for one file", served)
	}
}

// TestOriginErrors: a 404 fails clearly with no output; 500s then recovery
// is retried and completes.
func TestOriginErrors(t *testing.T) {
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("flaky.bin", 4*MiB, 5)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	out := t.TempDir()
	tests := []struct {
		name     string
		setup    func()
		url      string
		wantCode int
		wantText string
	}{
		{"404", func() {}, origin.URL("missing.bin"), 1, "404"},
		{"500 then recovers", func() { origin.FailNext("flaky.bin", 2, 500) }, origin.URL("flaky.bin"), 0, ""},
		{"malformed URL", func() {}, "htp:/nope", 1, "invalid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			dst := filepath.Join(out, strings.ReplaceAll(tt.name, " ", "_"))
			p := testenv.Dfget(t, bin, sn.Addr, tt.url, dst)
			code, err := p.Wait(time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; log:\n%s", code, tt.wantCode, p.Tail(20))
			}
			if tt.wantCode != 0 {
				if !strings.Contains(p.Log(), tt.wantText) {
					t.Errorf("error does not mention %q:\n%s", tt.wantText, p.Tail(10))
				}
				if _, err := os.Stat(dst); err == nil {
					t.Error("output file exists after a failed download")
				}
				return
			}
			assertSHA(t, dst, want)
		})
	}
}

// TestSupernodeRestart restarts the supernode (kill -9) mid-transfer: every
// download completes.
func TestSupernodeRestart(t *testing.T) {
	bin := bins(t)
	const size = 32 * MiB
	origin := testenv.NewOrigin(t, testenv.WithUploadCap(8*MiB))
	want := origin.AddRandom("f.bin", size, 6)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	out := t.TempDir()
	procs, dirs := startPeers(t, bin, sn.Addr, origin.URL("f.bin"), out, 8, "--limit", "6M")
	waitPresent(t, dirs[0], 3, time.Minute)
	sn.Restart(t)
	waitAll(t, procs, 3*time.Minute)
	for i := range procs {
		assertSHA(t, filepath.Join(out, fmt.Sprintf("f%d", i)), want)
	}
	// The kill loses the seed's origin fetches in flight (4 range
	// requests, --origin-concurrency): at most those pieces come twice.
	if served := origin.BytesServed("f.bin"); served > size+4*pieceSize(size) {
		t.Errorf("origin served %d bytes, want <= one copy + 4 in-flight pieces (%d)", served, size+4*pieceSize(size))
	}
}

// TestNoSupernode: with no supernode reachable dfget goes to the origin and
// says so; with --no-source it fails.
func TestNoSupernode(t *testing.T) {
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", 3*MiB, 7)
	dead := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	out := filepath.Join(t.TempDir(), "f")
	p := testenv.Dfget(t, bin, dead, origin.URL("f.bin"), out, "--log-level", "warn")
	waitOK(t, p, time.Minute)
	assertSHA(t, out, want)
	if r := parseResult(t, p); !r.BackToSource || r.Origin != 3*MiB {
		t.Errorf("result %+v: want back to source with all bytes from the origin", r)
	}
	if !strings.Contains(p.Log(), "origin") {
		t.Errorf("dfget did not say it went to the origin:\n%s", p.Tail(10))
	}
	out2 := filepath.Join(t.TempDir(), "g")
	p2 := testenv.Dfget(t, bin, dead, origin.URL("f.bin"), out2, "--no-source")
	if code, _ := p2.Wait(time.Minute); code == 0 {
		t.Fatal("--no-source with no supernode succeeded")
	}
	if _, err := os.Stat(out2); err == nil {
		t.Fatal("output written despite failure")
	}
}

// TestDaemonAndCompatFlags downloads through a dfdaemon using the classic
// dfget spellings, then checks whole-file digest handling.
func TestDaemonAndCompatFlags(t *testing.T) {
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", 5*MiB, 8)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	d := testenv.StartDaemon(t, bin, sn.Addr)
	dir := t.TempDir()
	md5 := md5File(t, origin, "f.bin")

	out := filepath.Join(dir, "compat")
	p := testenv.Start(t, bin, "dfget", "-u", origin.URL("f.bin")+"?token=abc&x=1", "-o", out, "--node", sn.Addr,
		"-s", "50M", "--totallimit", "100M", "-m", md5, "-i", "v1", "-f", "token&sig", "-e", "60", "--notbs",
		"--daemon-sock", d.Sock, "--header", "Authorization: Bearer s3cr3t")
	waitOK(t, p, time.Minute)
	assertSHA(t, out, want)
	if !strings.Contains(p.Log(), "via dfdaemon") {
		t.Errorf("download did not go through the daemon:\n%s", p.Tail(5))
	}
	if strings.Contains(d.Proc.Log()+sn.Proc.Log(), "s3cr3t") {
		t.Error("a header value reached the logs")
	}
	if strings.Contains(string(mustGet(t, sn.URL("/api/v1/status"))), "s3cr3t") {
		t.Error("a header value reached the status API")
	}

	bad := filepath.Join(dir, "bad")
	p = testenv.Start(t, bin, "dfget", origin.URL("f.bin"), "-o", bad, "--supernode", sn.Addr,
		"--daemon-sock", d.Sock, "--digest", "sha256:"+strings.Repeat("0", 64))
	if code, _ := p.Wait(time.Minute); code == 0 {
		t.Fatal("wrong --digest accepted")
	}
	if _, err := os.Stat(bad); err == nil {
		t.Fatal("output written despite digest mismatch")
	}
	good := filepath.Join(dir, "good")
	p = testenv.Start(t, bin, "dfget", origin.URL("f.bin"), "-o", good, "--supernode", sn.Addr,
		"--daemon-sock", d.Sock, "--digest", "sha256:"+want)
	waitOK(t, p, time.Minute)
	assertSHA(t, good, want)
}

// TestHelpDocumentsFlags checks that --help lists every flag.
func TestHelpDocumentsFlags(t *testing.T) {
	bin := bins(t)
	p := testenv.Start(t, bin, "dfget", "--help")
	waitOK(t, p, 30*time.Second)
	for _, f := range []string{"--url", "--output", "--supernode", "--node", "--header", "--digest", "--md5",
		"--limit", "--locallimit", "--totallimit", "--timeout", "--no-source", "--notbs", "--tag", "--identifier",
		"--filter", "--upload-listen", "--keep-seeding", "--no-progress", "--showbar", "--data-dir", "--daemon-sock",
		"-u,", "-o,", "-s,", "-m,", "-b,", "-i,", "-f,", "-e,"} {
		if !strings.Contains(p.Log(), f) {
			t.Errorf("dfget --help does not document %s", f)
		}
	}
}
