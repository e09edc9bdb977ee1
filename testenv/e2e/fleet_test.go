//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/wire"
)

// failoverBound is how long, at most, a download may take after its task's
// owner was killed: peers see connection refused at once on their next sync
// (every 250 ms), move to the next supernode in the task's HRW order,
// register there and re-report their pieces; the new owner's seed then
// serves what no peer has. 60 s covers that with the 6 MiB/s per-peer limit
// of the test and a loaded CI machine.
const failoverBound = 60 * time.Second

// startFleet starts n supernodes allowed to fetch from origin and returns
// them with the --supernode value naming all of them. With tr they take
// its tokens (a nil tr: a plain cluster).
func startFleet(t *testing.T, bin string, origin *testenv.Origin, n int, tr ...*testenv.Trust) ([]*testenv.Supernode, string) {
	t.Helper()
	var sns []*testenv.Supernode
	var addrs []string
	for range n {
		var sn *testenv.Supernode
		if len(tr) > 0 && tr[0] != nil {
			sn = tr[0].StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
		} else {
			sn = testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
		}
		sns = append(sns, sn)
		addrs = append(addrs, sn.Addr)
	}
	return sns, strings.Join(addrs, ",")
}

// ownerOf returns the supernode that owns url's task: the first in the
// task ID's HRW order over the supernodes' addresses.
func ownerOf(t *testing.T, sns []*testenv.Supernode, url string) (owner *testenv.Supernode, others []*testenv.Supernode) {
	t.Helper()
	id, err := manifest.TaskID(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, sn := range sns {
		addrs = append(addrs, sn.Addr)
	}
	want := wire.HRWOwner(id, addrs)
	for _, sn := range sns {
		if sn.Addr == want {
			owner = sn
		} else {
			others = append(others, sn)
		}
	}
	return owner, others
}

// TestFleetOwners: three supernodes and 12 dfget peers fetching 6 files at
// once. Each file's task lives on the one supernode the hash picks, and the
// origin serves each file about once.
func TestFleetOwners(t *testing.T) {
	bin := bins(t)
	const size, files, perFile = 8 * MiB, 6, 2
	origin := testenv.NewOrigin(t)
	sns, supernodes := startFleet(t, bin, origin, 3)
	out := t.TempDir()
	want := map[string]string{}
	var procs []*testenv.Proc
	var names []string
	for f := range files {
		name := fmt.Sprintf("file%d.bin", f)
		want[name] = origin.AddRandom(name, size, int64(100+f))
		for p := range perFile {
			names = append(names, name)
			procs = append(procs, testenv.Dfget(t, bin, supernodes, origin.URL(name), filepath.Join(out, fmt.Sprintf("%s.%d", name, p))))
		}
	}
	waitAll(t, procs, 3*time.Minute)
	for i, name := range names {
		assertSHA(t, filepath.Join(out, fmt.Sprintf("%s.%d", name, i%perFile)), want[name])
	}
	owned := map[string]int{}
	for f := range files {
		name := fmt.Sprintf("file%d.bin", f)
		url := origin.URL(name)
		owner, others := ownerOf(t, sns, url)
		owned[owner.Addr]++
		served := origin.BytesServed(name)
		if task := owner.Status(t).Task(url); task == nil {
			t.Errorf("%s: its owner %s does not know its task", name, owner.Addr)
		} else if task.BytesFromOrigin != served {
			t.Errorf("%s: owner %s fetched %d bytes from the origin, the origin served %d", name, owner.Addr, task.BytesFromOrigin, served)
		}
		for _, sn := range others {
			if sn.Status(t).Task(url) != nil {
				t.Errorf("%s: supernode %s, not its owner, knows its task", name, sn.Addr)
			}
		}
		if limit := int64(size) + pieceSize(size); served > limit {
			t.Errorf("%s: origin served %d bytes, want <= %d (the file once, plus a piece)", name, served, limit)
		}
	}
	t.Logf("tasks per supernode: %v", owned)

	// dfctl status shows the whole cluster and who owns what.
	status := testenv.Start(t, bin, "dfctl", "status", "--supernode", supernodes)
	if code, err := status.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("dfctl status: exit %d, %v\n%s", code, err, status.Log())
	}
	for _, sn := range sns {
		if !strings.Contains(status.Log(), sn.Addr) {
			t.Errorf("dfctl status does not show supernode %s:\n%s", sn.Addr, status.Log())
		}
	}
}

// TestFleetOwnerKilled: the owner of a file is killed (SIGKILL) while 8
// rate-limited peers fetch it. Every download completes with the right
// bytes within failoverBound of the kill, and the origin serves the file
// about once in all: the peers present the digest lists the dead owner
// sealed to the next owner, whose seed then fetches only what no peer
// holds (the supernodes share an admin token, which keys the seals; the
// peers have only the cluster token), and the dead owner's fill was paced
// to the swarm (--seed-lead), so little died with it: the origin serves
// at most the file plus max(4, lead) pieces. The supernode then restarts on the
// same address and takes the task back while a second wave downloads,
// without a failure.
func TestFleetOwnerKilled(t *testing.T) {
	bin := bins(t)
	const size, peers = 24 * MiB, 8
	origin := testenv.NewOrigin(t, testenv.WithUploadCap(16*MiB))
	want := origin.AddRandom("big.bin", size, 7)
	url := origin.URL("big.bin")
	tr := testenv.NewTrust(t, testenv.TrustOptions{ClusterToken: true, AdminToken: true})
	sns, supernodes := startFleet(t, bin, origin, 3, tr)
	owner, _ := ownerOf(t, sns, url)
	out := t.TempDir()
	var procs []*testenv.Proc
	var dirs []string
	for i := range peers {
		dir := t.TempDir()
		dirs = append(dirs, dir)
		procs = append(procs, tr.Dfget(t, bin, supernodes, url, filepath.Join(out, fmt.Sprint("a", i)),
			"--data-dir", dir, "--limit", "6M"))
	}
	waitPresent(t, dirs[0], 4, time.Minute)
	owner.Proc.Kill9()
	killed := time.Now()
	servedAtKill := origin.BytesServed("big.bin")
	peersHeld := heldSet(dirs)
	heldAtKill := len(peersHeld)
	// Pieces that died with the owner: those only its seed held.
	lost := 0
	for i := range heldSet([]string{owner.DataDir}) {
		if !peersHeld[i] {
			lost++
		}
	}
	t.Logf("killed owner %s; the origin had served %d bytes; the peers held %d pieces between them, the owner %d more",
		owner.Addr, servedAtKill, heldAtKill, lost)
	waitAll(t, procs, failoverBound)
	t.Logf("every download done %v after the kill", time.Since(killed).Round(time.Millisecond))
	for i := range peers {
		assertSHA(t, filepath.Join(out, fmt.Sprint("a", i)), want)
		if r := parseResult(t, procs[i]); r.BackToSource || r.Origin != 0 {
			t.Errorf("peer %d went to the origin (%+v)", i, r)
		}
	}
	// The successor adopted the digests the dead owner sealed: its seed
	// fetches only the pieces no peer held (plus at most 2 fetched
	// before the last peers' lists came in), so the origin serves the
	// file once plus what died with the owner. Its fill was paced: it
	// held at most lead pieces no peer had (fetching, or fetched and
	// not yet sent whole to a child; pieces it had sent reach the
	// children after the kill), so the bound holds: the file
	// plus a few pieces: max(4, lead) for what the paced fill held,
	// lead being supernode.DefaultSeedLead (the fleet runs without
	// --seed-lead), and as many again for pieces the owner had sent
	// whole into a child's connection that the kill cut (with larger
	// paced writes, since the CPU work, one run lost 4.6 pieces in all;
	// 2.5 to 3.8 before). Measured again after a settle, so that a
	// background refetch would be caught.
	ps := pieceSize(size)
	unheld := int64(size) - int64(heldAtKill)*ps
	limit := int64(size) + 2*int64(max(4, supernode.DefaultSeedLead))*ps
	for _, when := range []string{"when the downloads were done", "3 s later"} {
		if when != "when the downloads were done" {
			time.Sleep(3 * time.Second)
		}
		served := origin.BytesServed("big.bin")
		after := served - servedAtKill
		t.Logf("%s the origin had served %d bytes (%.2fx the file, %.1f pieces over it): %d before the kill, %d after (%.2fx the %d bytes no peer held)",
			when, served, float64(served)/float64(size), float64(served-int64(size))/float64(ps), servedAtKill, after,
			float64(after)/float64(unheld), unheld)
		if after > unheld+2*ps {
			t.Errorf("%s the successor had fetched %d bytes, want <= %d (what no peer held at the kill, plus 2 pieces)", when, after, unheld+2*ps)
		}
		if served > limit {
			t.Errorf("%s the origin had served %d bytes, want <= %d (the file once, plus twice max(4, lead %d) pieces: what a paced fill and cut connections may lose); at the kill the peers' stores lacked %d pieces the owner held",
				when, served, limit, supernode.DefaultSeedLead, lost)
		}
	}

	if t.Failed() {
		// What the successors' seeds did (adoptions, fills, refusals).
		for _, sn := range sns {
			if sn == owner {
				continue
			}
			for _, line := range strings.Split(sn.Proc.Log(), "\n") {
				if strings.Contains(line, "seed") {
					t.Logf("%s: %s", sn.Addr, line)
				}
			}
		}
	}
	// The owner comes back: a second wave, started before it is up, moves
	// to it once its health check answers, and nothing fails.
	var wave []*testenv.Proc
	for i := range peers {
		wave = append(wave, tr.Dfget(t, bin, supernodes, url, filepath.Join(out, fmt.Sprint("b", i)), "--limit", "6M"))
	}
	owner.Restart(t)
	waitAll(t, wave, failoverBound)
	for i := range peers {
		assertSHA(t, filepath.Join(out, fmt.Sprint("b", i)), want)
	}
	// New downloads go to the owner again.
	late := tr.Dfget(t, bin, supernodes, url, filepath.Join(out, "late"))
	waitAll(t, []*testenv.Proc{late}, failoverBound)
	assertSHA(t, filepath.Join(out, "late"), want)
	if owner.Status(t).Task(url) == nil {
		t.Errorf("restarted owner %s did not take its task back", owner.Addr)
	}
}

// heldSet is the set of pieces at least one of the peers' stores in dirs
// holds (the union over peers of one task), reading the stores' piece
// records as cache.CountPresent does.
func heldSet(dirs []string) map[int]bool {
	held := map[int]bool{}
	for _, dir := range dirs {
		matches, _ := filepath.Glob(filepath.Join(dir, "tasks", "*", "pieces"))
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				continue
			}
			for i := 0; (i+1)*len(cache.Sum{}) <= len(b); i++ {
				if !cache.Sum(b[i*len(cache.Sum{}) : (i+1)*len(cache.Sum{})]).IsZero() {
					held[i] = true
				}
			}
		}
	}
	return held
}
