package supernode_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/wire"
)

// TestS3Preheat preheats an s3 object through a presigned URL: refused
// (before the store is asked) without an allowed endpoint, for a prefix, or
// for a URL naming another object or host; refused when the store refuses
// the signature or answers another ETag; accepted otherwise, after which
// the seed holds the whole object, status shows s3://BUCKET/KEY, a peer
// registering the object costs the store nothing more than the check, and
// no signature is in the logs, the preheat's status or the task status.
func TestS3Preheat(t *testing.T) {
	const size = 7<<20 + 321
	store := newFakeStore(t, size)
	oi := objstore.ObjectInfo{Bucket: "bkt", Key: "data/obj.bin", ETag: store.etag}
	id := objstore.TaskID(oi, "")
	const s3URL = "s3://bkt/data/obj.bin"
	good := presign(t, store.srv.URL, "AKIDGOOD", oi)
	secrets := []string{}
	secret := func(raw string) string {
		u, _ := url.Parse(raw)
		secrets = append(secrets, u.Query().Get("X-Amz-Signature"))
		return raw
	}
	secret(good)
	preheat := func(presigned string) wire.PreheatRequest {
		return wire.PreheatRequest{URL: s3URL, TaskID: id, S3Presigned: presigned}
	}

	t.Run("refused without an allowed endpoint", func(t *testing.T) {
		n := startNode(t, supernode.Config{})
		a := n.post(t, "/api/v1/preheats", preheat(good))
		if a.status != http.StatusForbidden || !strings.Contains(string(a.body), "--s3-endpoint") {
			t.Fatalf("status %d: %s; want 403 naming --s3-endpoint", a.status, a.body)
		}
		if store.requests.Load() != 0 {
			t.Fatalf("the store got %d requests", store.requests.Load())
		}
	})

	n := startNode(t, supernode.Config{S3Endpoints: []string{store.srv.URL}})
	otherHost := secret(strings.Replace(presign(t, "http://127.0.0.2:"+strings.Split(store.srv.URL, ":")[2], "AKIDGOOD", oi), "127.0.0.2", "localhost", 1))
	otherKey := secret(presign(t, store.srv.URL, "AKIDGOOD", objstore.ObjectInfo{Bucket: "bkt", Key: "data/other.bin"}))
	otherBucket := secret(presign(t, store.srv.URL, "AKIDGOOD", objstore.ObjectInfo{Bucket: "bkt2", Key: "data/obj.bin"}))
	badCreds := secret(presign(t, store.srv.URL, "AKIDBAD", oi))
	withQuery := secret(good + "&response-content-type=text%2Fplain")
	bad := []struct {
		name   string
		req    wire.PreheatRequest
		status int
		want   string
		asked  bool // whether the store may be asked
	}{
		{"a prefix", wire.PreheatRequest{URL: "s3://bkt/data/", TaskID: id, S3Presigned: good}, 400, "prefix is not supported", false},
		{"the bucket", wire.PreheatRequest{URL: "s3://bkt", TaskID: id, S3Presigned: good}, 400, "prefix is not supported", false},
		{"bad bucket", wire.PreheatRequest{URL: "s3://b/x", TaskID: id, S3Presigned: good}, 400, "bucket name", false},
		{"as an image", wire.PreheatRequest{URL: s3URL, Type: "image", TaskID: id, S3Presigned: good}, 400, "as a file", false},
		{"with a digest", wire.PreheatRequest{URL: s3URL, Digest: "sha256:" + strings.Repeat("0", 64), TaskID: id, S3Presigned: good}, 400, "no digest", false},
		{"with headers", wire.PreheatRequest{URL: s3URL, Headers: http.Header{"Authorization": {"x"}}, TaskID: id, S3Presigned: good}, 400, "no digest, filters, headers", false},
		{"no presigned URL", wire.PreheatRequest{URL: s3URL, TaskID: id}, 400, "no presigned GET URL", false},
		{"no task ID", wire.PreheatRequest{URL: s3URL, S3Presigned: good}, 400, "taskID", false},
		{"upper-case task ID", wire.PreheatRequest{URL: s3URL, TaskID: strings.ToUpper(id), S3Presigned: good}, 400, "taskID", false},
		{"presigned URL on an http URL", wire.PreheatRequest{URL: "http://127.0.0.1:1/x", S3Presigned: good}, 400, "only for s3://", false},
		{"task ID on an http URL", wire.PreheatRequest{URL: "http://127.0.0.1:1/x", TaskID: id}, 400, "only for s3://", false},
		{"presigned URL for another host", preheat(otherHost), 403, "not an allowed s3 endpoint", false},
		{"presigned URL for another key", preheat(otherKey), 403, "another object", false},
		{"presigned URL for another bucket", preheat(otherBucket), 403, "another object", false},
		{"presigned URL with extra parameters", preheat(withQuery), 403, "not allowed", false},
		{"not a presigned URL", preheat(store.srv.URL + "/bkt/data/obj.bin"), 403, "not a SigV4", false},
		{"wrong credentials", preheat(badCreds), 403, "the store refused the presigned URL", true},
		{"another version's task ID", wire.PreheatRequest{URL: s3URL, TaskID: objstore.TaskID(objstore.ObjectInfo{Bucket: "bkt", Key: "data/obj.bin", ETag: "0123"}, ""),
			S3Presigned: good}, 409, "ETag does not match", true},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			before := store.requests.Load()
			a := n.post(t, "/api/v1/preheats", tc.req)
			if a.status != tc.status || !strings.Contains(string(a.body), tc.want) {
				t.Fatalf("status %d: %s; want %d with %q", a.status, a.body, tc.status, tc.want)
			}
			if asked := store.requests.Load() - before; asked != 0 && !tc.asked {
				t.Errorf("the store was asked %d times about a refused preheat", asked)
			}
		})
	}
	if got := store.bytes.Load(); got > 16 {
		t.Fatalf("the store sent %d bytes for refused preheats", got)
	}
	if a := n.get(t, "/api/v1/preheats"); a.status != http.StatusOK || strings.Contains(string(a.body), `"id"`) {
		t.Fatalf("refused preheats were listed: %d %s", a.status, a.body)
	}

	st := waitPreheat(t, n, startPreheat(t, n, preheat(good)).ID)
	if st.State != wire.PreheatSuccess || st.URL != s3URL || st.Type != wire.PreheatFile || len(st.Blobs) != 1 ||
		st.Blobs[0].TaskID != id || st.Blobs[0].URL != s3URL || st.Present != size {
		t.Fatalf("preheat: %+v", st)
	}
	ts := n.waitDone(t, id)
	if ts.URL != s3URL {
		t.Errorf("task status URL %q, want %s", ts.URL, s3URL)
	}
	served := store.bytes.Load()
	if served < size || served > size+size/50 {
		t.Errorf("the store sent %d bytes for a preheat of %d", served, size)
	}

	// A peer reading the object now: the check, and nothing else.
	reg := n.register(t, wire.RegisterRequest{PeerID: "p1", Host: peerHost("p1", 1), URL: s3URL, TaskID: id, Lazy: true,
		S3Presigned: secret(presign(t, store.srv.URL, "AKIDGOOD", oi))})
	if !reg.SeedDone || reg.Length != size {
		t.Fatalf("registration after the preheat: %+v", reg)
	}
	sum := sha256.Sum256(store.data)
	if got := n.seedContent(t, reg); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("seed content sha256 %s, want %x", got, sum)
	}
	if more := store.bytes.Load() - served; more > 16 {
		t.Errorf("the store sent %d more bytes to a peer after the preheat", more)
	}

	_, status := n.status(t)
	list := n.get(t, "/api/v1/preheats")
	for what, text := range map[string]string{"log": n.logs.String(), "status": string(status), "preheats": string(list.body)} {
		for _, s := range secrets {
			if s == "" || strings.Contains(text, s) {
				t.Fatalf("a presigned URL's signature is in the supernode's %s", what)
			}
		}
		if strings.Contains(text, "X-Amz-Signature=") && !strings.Contains(text, "X-Amz-Signature=REDACTED") {
			t.Fatalf("unredacted signature in the supernode's %s", what)
		}
	}
}
