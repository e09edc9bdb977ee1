//go:build e2e && unix

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/wire"
)

// TestS3Swarm reads one object of a real S3 store (SeaweedFS) from two
// peers at once (two dfget processes, separate data dirs) through a
// supernode that allows the store's endpoint: both outputs have the
// object's sha256 and the store serves about one copy. A dfmount started
// afterwards reads it in mode p2p at no cost to the store. A peer with
// wrong credentials gets a clear error and no bytes; registrations with a
// presigned URL to another host, or signed with wrong credentials, are
// refused; the supernode's log and status hold no signature.
func TestS3Swarm(t *testing.T) {
	bin := bins(t)
	const bucket = "swarm"
	sw := testenv.StartSeaweed(t, bucket)
	const size = 48<<20 + 4321
	rng := rand.New(rand.NewPCG(18, 5))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	const key = "shards/train-000.bin"
	sw.Put(t, bucket, key, data)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	s3url := "s3://" + bucket + "/" + key

	store := testenv.StartStoreProxy(t, sw.Endpoint)
	sn := testenv.StartSupernode(t, bin, "--allow-origin", store.Addr, "--s3-endpoint", store.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", sw.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", sw.SecretAccessKey)
	s3flags := []string{"--s3-endpoint", store.URL, "--s3-path-style", "--s3-region", testenv.SeaweedRegion, "--no-daemon"}

	// Two peers at once.
	out := t.TempDir()
	before := store.Counts().Bytes()
	start := time.Now()
	procs, _ := startPeers(t, bin, sn.Addr, s3url, out, 2, append(s3flags, "--log-level", "info")...)
	waitAll(t, procs, 3*time.Minute)
	took := time.Since(start)
	served := store.Counts().Bytes() - before
	for i, p := range procs {
		assertSHA(t, filepath.Join(out, []string{"f0", "f1"}[i]), want)
		res := parseResult(t, p)
		t.Logf("peer %d: %+v", i, res)
		if res.BackToSource || res.Peers+res.Seed != size {
			t.Errorf("peer %d did not read the object through the swarm: %+v\n%s", i, res, p.Tail(20))
		}
	}
	t.Logf("two dfget peers, object of %d bytes: the store served %d bytes (%.2f copies) in %v",
		size, served, float64(served)/size, took.Round(time.Millisecond))
	if served > size+size/10 {
		t.Errorf("the store served %d bytes for two peers reading %d: want about one copy", served, size)
	}
	if served < size {
		t.Errorf("the store served %d bytes, less than the object's %d: counting is broken", served, size)
	}

	// A third peer, a dfmount, reads through the swarm at no cost to the store.
	before = store.Counts().Bytes()
	mnt := t.TempDir()
	m := startMount(t, bin, s3url, mnt, append(s3flags, "--supernode", sn.Addr, "--data-dir", t.TempDir(),
		"--upload-listen", "127.0.0.1:0", "--prefetch=false")...)
	file := filepath.Join(mnt, filepath.Base(key))
	if mode := mountMode(t, file); mode != "p2p" {
		t.Fatalf("dfmount of the object: mode %q, want p2p\n%s", mode, m.Tail(20))
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read the mounted object: %v", err)
	}
	f.Close()
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("mounted object sha256 %s, want %s", got, want)
	}
	stopMount(t, m)
	third := store.Counts().Bytes() - before
	t.Logf("a third peer (dfmount, mode p2p) read the whole object: the store served %d more bytes", third)
	if third > 64<<10 {
		t.Errorf("the store served %d bytes for a third reader of a shared object", third)
	}

	// A restarted supernode keeps its copy (restarted here: the process
	// belongs to the test, not to a subtest).
	firstLog := sn.Proc.Log()
	sn.Restart(t)
	t.Run("a restarted supernode keeps its copy", func(t *testing.T) {
		before := store.Counts().Bytes()
		out := filepath.Join(t.TempDir(), "after-restart.bin")
		p := testenv.Dfget(t, bin, sn.Addr, s3url, out, append(s3flags, "--log-level", "info")...)
		waitOK(t, p, 2*time.Minute)
		assertSHA(t, out, want)
		n := store.Counts().Bytes() - before
		t.Logf("after a supernode restart a new peer read the object: the store served %d bytes", n)
		if n > 64<<10 {
			t.Errorf("the store served %d bytes after a supernode restart; the seed's copy should have been kept", n)
		}
	})

	t.Run("dfget resumes after kill -9", func(t *testing.T) {
		dir, out := t.TempDir(), filepath.Join(t.TempDir(), "resumed.bin")
		p := testenv.Dfget(t, bin, sn.Addr, s3url, out, append(s3flags, "--data-dir", dir, "--limit", "4M", "--log-level", "info")...)
		waitPresent(t, dir, 3, time.Minute)
		p.Kill9()
		present := presentPieces(t, dir)
		p = testenv.Dfget(t, bin, sn.Addr, s3url, out, append(s3flags, "--data-dir", dir, "-m", md5hex(data), "--log-level", "info")...)
		waitOK(t, p, 2*time.Minute)
		assertSHA(t, out, want)
		res := parseResult(t, p)
		t.Logf("rerun after kill -9 with %d pieces stored: %+v", present, res)
		if res.Reused < int64(present)*pieceSize(size) || res.Peers+res.Seed != size-res.Reused {
			t.Fatalf("rerun reused %d bytes; want the %d stored pieces reused and the rest from the swarm", res.Reused, present)
		}
	})

	t.Run("peers go back to the store when the seed cannot fetch", func(t *testing.T) {
		// The store accepts the supernode's check of a presigned URL but
		// refuses the seed's piece fetches (as with revoked credentials):
		// after the stall timeout the peer reads the store itself.
		const size2 = 6<<20 + 99
		data2 := data[:size2]
		sw.Put(t, bucket, "shards/small.bin", data2)
		sum2 := sha256.Sum256(data2)
		store.RefuseSeed.Store(true)
		defer store.RefuseSeed.Store(false)
		out := filepath.Join(t.TempDir(), "small.bin")
		start := time.Now()
		p := testenv.Dfget(t, bin, sn.Addr, "s3://"+bucket+"/shards/small.bin", out, append(s3flags, "--log-level", "info")...)
		waitOK(t, p, 2*time.Minute)
		assertSHA(t, out, hex.EncodeToString(sum2[:]))
		res := parseResult(t, p)
		t.Logf("seed refused by the store: dfget went back to the store after %v: %+v", time.Since(start).Round(time.Second), res)
		if !res.BackToSource || res.Origin == 0 || !strings.Contains(p.Log(), "reading it straight from the store") {
			t.Fatalf("dfget did not go back to the store: %+v\n%s", res, p.Tail(20))
		}
	})

	t.Run("a supernode without --s3-endpoint leaves peers reading the store", func(t *testing.T) {
		plain := testenv.StartSupernode(t, bin, "--allow-origin", store.Addr)
		out := filepath.Join(t.TempDir(), "direct.bin")
		p := testenv.Dfget(t, bin, plain.Addr, s3url, out, append(s3flags, "--log-level", "info")...)
		waitOK(t, p, 2*time.Minute)
		assertSHA(t, out, want)
		res := parseResult(t, p)
		if !res.BackToSource || res.Origin != size || !strings.Contains(p.Log(), "does not share this object") {
			t.Fatalf("dfget through a supernode refusing s3: %+v\n%s", res, p.Tail(20))
		}
	})

	t.Run("wrong credentials", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
		before := store.Counts().Bytes()
		bad := filepath.Join(t.TempDir(), "bad.bin")
		p := testenv.Dfget(t, bin, sn.Addr, s3url, bad, append(s3flags, "--log-level", "info")...)
		code, err := p.Wait(time.Minute)
		if err != nil || code == 0 || !strings.Contains(p.Log(), "access denied") {
			t.Fatalf("dfget with a wrong secret: exit %d, %v; want a non-zero exit saying access denied\n%s", code, err, p.Tail(20))
		}
		if _, err := os.Stat(bad); err == nil {
			t.Fatal("output file exists after a refused download")
		}
		if n := store.Counts().Bytes() - before; n > 4<<10 {
			t.Errorf("the store sent %d bytes to a peer with wrong credentials", n)
		}
	})

	oi := objstore.ObjectInfo{Bucket: bucket, Key: key, ETag: md5hex(data)}
	presign := func(t *testing.T, endpoint, secret string) string {
		t.Helper()
		c, err := objstore.New(context.Background(), objstore.Options{Endpoint: endpoint, PathStyle: true,
			Region: testenv.SeaweedRegion, AccessKeyID: sw.AccessKeyID, SecretAccessKey: secret})
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.PresignGet(context.Background(), oi, 0)
		if err != nil {
			t.Fatal(err)
		}
		return p.URL
	}
	var signatures []string
	register := func(t *testing.T, presigned string) (int, wire.ErrorResponse, []byte) {
		t.Helper()
		u, _ := url.Parse(presigned)
		signatures = append(signatures, u.Query().Get("X-Amz-Signature"))
		body, _ := json.Marshal(wire.RegisterRequest{PeerID: "attacker", Host: wire.Host{Hostname: "evil", UploadAddr: "127.0.0.1:1"},
			URL: s3url, TaskID: objstore.TaskID(oi, ""), Lazy: true, S3Presigned: presigned})
		resp, err := http.Post(sn.URL("/api/v1/tasks/register"), "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e wire.ErrorResponse
		json.Unmarshal(b, &e)
		return resp.StatusCode, e, b
	}
	t.Run("presigned URL to a host not allowed", func(t *testing.T) {
		// The store itself, not the allowed endpoint: were it taken, the
		// seed would fetch from wherever a registrant points it.
		code, e, b := register(t, presign(t, sw.Endpoint, sw.SecretAccessKey))
		if code != http.StatusForbidden || !strings.Contains(e.Message, "not an allowed s3 endpoint") || strings.Contains(string(b), "taskCredential") {
			t.Fatalf("registration with a presigned URL to %s: %d %s; want 403 naming the endpoint", sw.Endpoint, code, b)
		}
		t.Logf("refused: %d %s", code, e.Message)
	})
	t.Run("presigned URL with wrong credentials", func(t *testing.T) {
		before := store.Counts().Bytes()
		code, e, b := register(t, presign(t, store.URL, "not-the-secret"))
		if code != http.StatusForbidden || !strings.Contains(e.Message, "the store refused the presigned URL") || strings.Contains(string(b), "taskCredential") {
			t.Fatalf("registration with a badly signed URL: %d %s; want 403 'the store refused'", code, b)
		}
		if n := store.Counts().Bytes() - before; n > 4<<10 {
			t.Errorf("the store sent %d bytes for a badly signed URL", n)
		}
		t.Logf("refused: %d %s", code, e.Message)
	})
	t.Run("a good presigned URL is taken", func(t *testing.T) {
		code, _, b := register(t, presign(t, store.URL, sw.SecretAccessKey))
		if code != http.StatusOK || !strings.Contains(string(b), `"length":`+itoa(size)) {
			t.Fatalf("registration with a good presigned URL: %d %s", code, b)
		}
	})

	t.Run("no signature in logs or status", func(t *testing.T) {
		st := sn.Status(t)
		status, _ := json.Marshal(st)
		if task := st.Task(s3url); task == nil {
			t.Errorf("status lists no task %s: %s", s3url, status)
		}
		for what, text := range map[string]string{"supernode's log": firstLog + sn.Proc.Log(), "supernode's status": string(status),
			"peer 0's log": procs[0].Log(), "peer 1's log": procs[1].Log()} {
			for _, s := range signatures {
				if s == "" || strings.Contains(text, s) {
					t.Fatalf("the %s holds a presigned URL's signature", what)
				}
			}
			for rest := text; ; {
				i := strings.Index(rest, "X-Amz-Signature")
				if i < 0 {
					break
				}
				rest = rest[i+len("X-Amz-Signature"):]
				if !strings.HasPrefix(rest, "=REDACTED") {
					t.Fatalf("the %s shows X-Amz-Signature%s", what, rest[:min(len(rest), 40)])
				}
			}
		}
	})
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
