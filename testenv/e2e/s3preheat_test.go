//go:build e2e && unix

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/xattr"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/testenv"
)

func sha256hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// noUnredactedSignature fails when text shows a presigned URL's signature
// or credential scope.
func noUnredactedSignature(t *testing.T, what, text string) {
	t.Helper()
	for _, param := range []string{"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token"} {
		for rest := text; ; {
			i := strings.Index(rest, param)
			if i < 0 {
				break
			}
			rest = rest[i+len(param):]
			if !strings.HasPrefix(rest, "=REDACTED") {
				t.Fatalf("the %s shows %s%s", what, param, rest[:min(len(rest), 40)])
			}
		}
	}
}

// TestS3Preheat: `dfctl preheat s3://BUCKET/KEY --wait` (dfctl's own AWS
// credentials) makes the supernode's seed fetch the object from a real S3
// store (SeaweedFS); status shows the task as s3://BUCKET/KEY; a dfget of
// the object afterwards gets every byte from the seed, so that the store
// serves one copy in all. A prefix, a supernode without --s3-endpoint and
// wrong credentials give clear errors; no signature shows anywhere.
func TestS3Preheat(t *testing.T) {
	bin := bins(t)
	const bucket = "preheat"
	sw := testenv.StartSeaweed(t, bucket)
	const size = 40<<20 + 777
	data := randomBytes(size, 1)
	const key = "models/weights-000.bin"
	sw.Put(t, bucket, key, data)
	want := sha256hex(data)
	s3url := "s3://" + bucket + "/" + key

	store := testenv.StartStoreProxy(t, sw.Endpoint)
	sn := testenv.StartSupernode(t, bin, "--allow-origin", store.Addr, "--s3-endpoint", store.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", sw.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", sw.SecretAccessKey)
	s3flags := []string{"--s3-endpoint", store.URL, "--s3-path-style", "--s3-region", testenv.SeaweedRegion}
	dfctl := func(t *testing.T, supernode string, args ...string) (*testenv.Proc, int) {
		t.Helper()
		p := testenv.Start(t, bin, "dfctl", append(append([]string{"preheat"}, args...), append(s3flags, "--supernode", supernode)...)...)
		code, err := p.Wait(3 * time.Minute)
		if err != nil {
			t.Fatalf("dfctl preheat: %v\n%s", err, p.Tail(20))
		}
		return p, code
	}

	start := time.Now()
	p, code := dfctl(t, sn.Addr, s3url, "--wait")
	took := time.Since(start)
	if code != 0 || !strings.Contains(p.Log(), "done: 1 blob(s)") {
		t.Fatalf("dfctl preheat %s: exit %d\n%s", s3url, code, p.Log())
	}
	preheated := store.Counts().Bytes()
	st := sn.Status(t)
	task := st.Task(s3url)
	if task == nil || task.State != "done" || task.SeedPieces != task.NumPieces || task.Length != size {
		status, _ := json.Marshal(st)
		t.Fatalf("status after the preheat: task %s: %+v\n%s", s3url, task, status)
	}
	t.Logf("dfctl preheat of %d bytes: %v; the store served %d bytes (%.3f copies)", size, took.Round(time.Millisecond),
		preheated, float64(preheated)/size)

	out := filepath.Join(t.TempDir(), "weights.bin")
	g := testenv.Dfget(t, bin, sn.Addr, s3url, out, append(s3flags, "--no-daemon", "--log-level", "info")...)
	waitOK(t, g, 2*time.Minute)
	assertSHA(t, out, want)
	res := parseResult(t, g)
	afterGet := store.Counts().Bytes() - preheated
	total := store.Counts().Bytes()
	t.Logf("dfget after the preheat: %+v; the store served %d more bytes (the presigned URL's check); %d in all (%.3f copies)",
		res, afterGet, total, float64(total)/size)
	if res.BackToSource || res.Seed+res.Peers != size || res.Origin != 0 {
		t.Errorf("dfget did not get every byte from the seed: %+v\n%s", res, g.Tail(20))
	}
	if afterGet > 64<<10 {
		t.Errorf("the store served %d bytes to dfget after the preheat; want only the check", afterGet)
	}
	if total < size || total > size+size/20 {
		t.Errorf("the store served %d bytes in all for an object of %d: want about one copy", total, size)
	}

	t.Run("a prefix is refused", func(t *testing.T) {
		p, code := dfctl(t, sn.Addr, "s3://"+bucket+"/models/")
		if code == 0 || !strings.Contains(p.Log(), "prefix is not supported") {
			t.Fatalf("dfctl preheat of a prefix: exit %d\n%s", code, p.Log())
		}
	})
	t.Run("a supernode without --s3-endpoint", func(t *testing.T) {
		plain := testenv.StartSupernode(t, bin, "--allow-origin", store.Addr)
		before := store.Counts().Bytes()
		p, code := dfctl(t, plain.Addr, s3url)
		if code == 0 || !strings.Contains(p.Log(), "start it with --s3-endpoint") {
			t.Fatalf("dfctl preheat through a supernode without --s3-endpoint: exit %d\n%s", code, p.Log())
		}
		if n := store.Counts().Bytes() - before; n > 4<<10 {
			t.Errorf("the store served %d bytes for a refused preheat", n)
		}
		t.Logf("refused: %s", strings.TrimSpace(p.Tail(1)))
		noUnredactedSignature(t, "plain supernode's log", plain.Proc.Log())
	})
	t.Run("wrong credentials", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
		p, code := dfctl(t, sn.Addr, s3url)
		if code == 0 || !strings.Contains(p.Log(), "access denied") {
			t.Fatalf("dfctl preheat with a wrong secret: exit %d\n%s", code, p.Log())
		}
	})
	t.Run("no signature in logs, status or output", func(t *testing.T) {
		status, _ := json.Marshal(sn.Status(t))
		preheats := mustGet(t, sn.URL("/api/v1/preheats"))
		for what, text := range map[string]string{"supernode's log": sn.Proc.Log(), "supernode's status": string(status),
			"preheat list": string(preheats), "dfctl output": p.Log(), "dfget log": g.Log()} {
			noUnredactedSignature(t, what, text)
		}
		if !strings.Contains(string(preheats), `"url":"`+s3url+`"`) {
			t.Errorf("the preheat list does not show %s: %s", s3url, preheats)
		}
	})
}

// TestS3Dataset mounts a dataset manifest (served by an HTTP origin) that
// mixes an HTTP entry and entries naming objects of a real S3 store
// (SeaweedFS), with dfmount --type dataset and the store's --s3-* flags,
// through a supernode allowing the store: every file's sha256 is right,
// s3 entries read through the swarm, one whose manifest size is wrong
// fails with EIO; a second mount reading the same entries costs the store
// nothing more. A manifest stored in the bucket itself resolves its
// relative entries to keys of that bucket.
func TestS3Dataset(t *testing.T) {
	bin := bins(t)
	const bucket = "dsobjects"
	sw := testenv.StartSeaweed(t, bucket)
	objects := map[string][]byte{
		"train/shard-000.bin": randomBytes(9<<20+123, 2),
		"train/shard-001.bin": randomBytes(5<<20+7, 3),
		"labels.json":         randomBytes(70<<10+3, 4),
	}
	var objectBytes int64
	for k, b := range objects {
		sw.Put(t, bucket, k, b)
		objectBytes += int64(len(b))
	}
	origin := testenv.NewOrigin(t)
	httpSum := origin.AddRandom("ds/readme.bin", 2<<20+11, 5)
	type entry struct {
		Path   string `json:"path"`
		Size   int64  `json:"size"`
		Digest string `json:"digest,omitempty"`
		URL    string `json:"url"`
	}
	wantSHA := map[string]string{"README.bin": httpSum}
	entries := []entry{{Path: "README.bin", Size: 2<<20 + 11, Digest: "sha256:" + httpSum, URL: "readme.bin"}}
	for k, b := range objects {
		p := "data/" + k
		entries = append(entries, entry{Path: p, Size: int64(len(b)), Digest: "sha256:" + sha256hex(b), URL: "s3://" + bucket + "/" + k})
		wantSHA[p] = sha256hex(b)
	}
	// The manifest says 1 byte more than the object has.
	entries = append(entries, entry{Path: "wrong-size.bin", Size: int64(len(objects["labels.json"])) + 1, URL: "s3://" + bucket + "/labels.json"})
	man, _ := json.Marshal(map[string]any{"version": 1, "files": entries})
	mpath := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.WriteFile(mpath, man, 0o644); err != nil {
		t.Fatal(err)
	}
	origin.AddFile("ds/manifest.json", mpath)

	store := testenv.StartStoreProxy(t, sw.Endpoint)
	sn := testenv.StartSupernode(t, bin, "--allow-origin", store.Addr, "--allow-origin", origin.Addr(), "--s3-endpoint", store.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", sw.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", sw.SecretAccessKey)
	mount := func(t *testing.T) (string, *testenv.Proc) {
		mnt := t.TempDir()
		m := startMount(t, bin, origin.URL("ds/manifest.json"), mnt, "--type", "dataset", "--supernode", sn.Addr,
			"--data-dir", t.TempDir(), "--no-daemon", "--upload-listen", "127.0.0.1:0", "--allow-origin", origin.Addr(),
			"--prefetch=false", "--s3-endpoint", store.URL, "--s3-path-style", "--s3-region", testenv.SeaweedRegion)
		return mnt, m
	}

	mnt, m := mount(t)
	start := time.Now()
	for p, want := range wantSHA {
		if got := sha256Of(t, filepath.Join(mnt, p)); got != want {
			t.Errorf("%s: sha256 %s, want %s", p, got, want)
		}
		if strings.HasPrefix(p, "data/") {
			if mode := mountMode(t, filepath.Join(mnt, p)); mode != "p2p" {
				t.Errorf("%s: mode %q, want p2p (through the swarm)\n%s", p, mode, m.Tail(20))
			}
			if src, err := xattr.Get(filepath.Join(mnt, p), fusefs.XattrSource); err != nil || !strings.HasPrefix(string(src), "s3://"+bucket+"/") {
				t.Errorf("%s: source xattr %q %v", p, src, err)
			}
		}
	}
	took := time.Since(start)
	_, err := os.ReadFile(filepath.Join(mnt, "wrong-size.bin"))
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("read of an entry whose size is wrong: %v, want EIO", err)
	}
	first := store.Counts().Bytes()
	t.Logf("dataset of 1 HTTP entry and %d s3 entries (%d bytes of objects) read through one mount in %v: the store served %d bytes (%.3f copies)",
		len(objects), objectBytes, took.Round(time.Millisecond), first, float64(first)/float64(objectBytes))
	if first < objectBytes || first > objectBytes+objectBytes/10 {
		t.Errorf("the store served %d bytes for %d bytes of objects: want about one copy", first, objectBytes)
	}
	stopMount(t, m)

	mnt2, m2 := mount(t)
	for p, want := range wantSHA {
		if got := sha256Of(t, filepath.Join(mnt2, p)); got != want {
			t.Errorf("second mount: %s: sha256 %s, want %s", p, got, want)
		}
	}
	stopMount(t, m2)
	second := store.Counts().Bytes() - first
	t.Logf("a second mount (own data dir) read every file: the store served %d more bytes (checks of presigned URLs); %.3f copies in all",
		second, float64(store.Counts().Bytes())/float64(objectBytes))
	if second > 64<<10 {
		t.Errorf("the store served %d bytes to a second mount of the dataset", second)
	}

	t.Run("a manifest in the bucket, relative entries", func(t *testing.T) {
		// Relative entries of an s3:// manifest are keys of its bucket.
		shard := objects["train/shard-001.bin"]
		man := fmt.Sprintf(`{"version":1,"files":[{"path":"s/1.bin","size":%d,"url":"../train/shard-001.bin"},`+
			`{"path":"labels.json","size":%d,"url":"s3://%s/labels.json"}]}`, len(shard), len(objects["labels.json"]), bucket)
		sw.Put(t, bucket, "ds/manifest.json", []byte(man))
		mnt := t.TempDir()
		m := startMount(t, bin, "s3://"+bucket+"/ds/manifest.json", mnt, "--type", "dataset", "--supernode", sn.Addr,
			"--data-dir", t.TempDir(), "--upload-listen", "127.0.0.1:0", "--prefetch=false",
			"--s3-endpoint", store.URL, "--s3-path-style", "--s3-region", testenv.SeaweedRegion)
		for p, want := range map[string]string{"s/1.bin": sha256hex(shard), "labels.json": wantSHA["data/labels.json"]} {
			if got := sha256Of(t, filepath.Join(mnt, p)); got != want {
				t.Errorf("%s: sha256 %s, want %s", p, got, want)
			}
		}
		stopMount(t, m)
	})
	noUnredactedSignature(t, "supernode's log", sn.Proc.Log())
	noUnredactedSignature(t, "dfmount's log", m.Log()+m2.Log())
}
