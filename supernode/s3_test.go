package supernode_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/wire"
)

// fakeStore stands in for an S3 store answering presigned GETs: it serves
// one object to URLs signed with the access key "AKIDGOOD" and refuses
// every other signer (and HEAD, as GET-only signatures are refused), like
// a store checking signatures would. It counts the body bytes it sends.
type fakeStore struct {
	srv      *httptest.Server
	data     []byte
	etag     string // without quotes
	requests atomic.Int64
	bytes    atomic.Int64
}

func newFakeStore(t *testing.T, size int) *fakeStore {
	t.Helper()
	f := &fakeStore{data: make([]byte, size)}
	rand.New(rand.NewSource(7)).Read(f.data)
	sum := md5.Sum(f.data)
	f.etag = hex.EncodeToString(sum[:])
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		q := r.URL.Query()
		if r.Method != http.MethodGet || !strings.HasPrefix(q.Get("X-Amz-Credential"), "AKIDGOOD/") || q.Get("X-Amz-Signature") == "" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if r.URL.Path != "/bkt/data/obj.bin" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", `"`+f.etag+`"`)
		http.ServeContent(countingWriter{w, &f.bytes}, r, "", time.Time{}, bytes.NewReader(f.data))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func presign(t *testing.T, endpoint, key string, oi objstore.ObjectInfo) string {
	t.Helper()
	c, err := objstore.New(context.Background(), objstore.Options{Endpoint: endpoint, PathStyle: true, Region: "us-east-1",
		AccessKeyID: key, SecretAccessKey: "secret-of-" + key})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.PresignGet(context.Background(), oi, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return p.URL
}

func TestS3Registration(t *testing.T) {
	const size = 9<<20 + 123
	store := newFakeStore(t, size)
	oi := objstore.ObjectInfo{Bucket: "bkt", Key: "data/obj.bin", ETag: store.etag}
	id := objstore.TaskID(oi, "")
	s3URL := "s3://bkt/data/obj.bin"
	good := presign(t, store.srv.URL, "AKIDGOOD", oi)
	req := func(peer, presigned string) wire.RegisterRequest {
		return wire.RegisterRequest{PeerID: peer, Host: peerHost(peer, 1), URL: s3URL, TaskID: id, S3Presigned: presigned}
	}

	t.Run("refused without an allowed endpoint", func(t *testing.T) {
		n := startNode(t, supernode.Config{})
		a := n.post(t, "/api/v1/tasks/register", req("p1", good))
		if a.status != http.StatusForbidden || !strings.Contains(string(a.body), "no --s3-endpoint") {
			t.Fatalf("status %d: %s; want 403 naming --s3-endpoint", a.status, a.body)
		}
		if store.requests.Load() != 0 {
			t.Fatalf("the store got %d requests", store.requests.Load())
		}
	})

	n := startNode(t, supernode.Config{S3Endpoints: []string{store.srv.URL}})
	secrets := []string{}
	addSecret := func(raw string) {
		u, _ := url.Parse(raw)
		secrets = append(secrets, u.Query().Get("X-Amz-Signature"))
	}
	addSecret(good)

	t.Run("presigned URL for another host", func(t *testing.T) {
		// The attack: make the seed fetch from somewhere else under the
		// identity of the store's object.
		other := strings.Replace(presign(t, "http://127.0.0.2:"+strings.Split(store.srv.URL, ":")[2], "AKIDGOOD", oi), "127.0.0.2", "localhost", 1)
		addSecret(other)
		before := store.requests.Load()
		a := n.post(t, "/api/v1/tasks/register", req("p1", other))
		if a.status != http.StatusForbidden || !strings.Contains(string(a.body), "not an allowed s3 endpoint") {
			t.Fatalf("status %d: %s; want 403", a.status, a.body)
		}
		if store.requests.Load() != before {
			t.Error("the supernode asked the store about a refused URL")
		}
	})
	t.Run("presigned URL for another object", func(t *testing.T) {
		other := presign(t, store.srv.URL, "AKIDGOOD", objstore.ObjectInfo{Bucket: "bkt", Key: "data/other.bin"})
		addSecret(other)
		a := n.post(t, "/api/v1/tasks/register", req("p1", other))
		if a.status != http.StatusForbidden || !strings.Contains(string(a.body), "another object") {
			t.Fatalf("status %d: %s; want 403", a.status, a.body)
		}
	})
	t.Run("wrong task ID", func(t *testing.T) {
		r := req("p1", good)
		r.TaskID = objstore.TaskID(objstore.ObjectInfo{Bucket: "bkt", Key: "data/obj.bin", ETag: "0123"}, "")
		a := n.post(t, "/api/v1/tasks/register", r)
		if a.status != http.StatusConflict || !strings.Contains(string(a.body), "ETag does not match") {
			t.Fatalf("status %d: %s; want 409", a.status, a.body)
		}
	})

	reg := n.register(t, req("p1", good))
	if reg.TaskID != id || reg.Length != size {
		t.Fatalf("registered %s of %d bytes, want %s of %d", reg.TaskID, reg.Length, id, size)
	}
	n.waitDone(t, id)
	sum := sha256.Sum256(store.data)
	if got := n.seedContent(t, reg); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("seed content sha256 %s, want %x", got, sum)
	}
	if got := store.bytes.Load(); got > size+1024 {
		t.Errorf("the store sent %d bytes for an object of %d", got, size)
	}

	t.Run("wrong credentials get nothing", func(t *testing.T) {
		bad := presign(t, store.srv.URL, "AKIDBAD", oi)
		addSecret(bad)
		a := n.post(t, "/api/v1/tasks/register", req("p2", bad))
		if a.status != http.StatusForbidden || !strings.Contains(string(a.body), "the store refused the presigned URL") {
			t.Fatalf("status %d: %s; want 403 'the store refused'", a.status, a.body)
		}
		if strings.Contains(string(a.body), "taskCredential") {
			t.Error("a refused registrant got a task credential")
		}
	})
	t.Run("an accepted URL is remembered", func(t *testing.T) {
		before := store.requests.Load()
		n.register(t, req("p1", good))
		if got := store.requests.Load() - before; got != 0 {
			t.Errorf("registering again with the same URL asked the store %d times", got)
		}
	})
	t.Run("presigned URL on a plain URL", func(t *testing.T) {
		a := n.post(t, "/api/v1/tasks/register", wire.RegisterRequest{PeerID: "p9", Host: peerHost("p9", 9),
			URL: "http://127.0.0.1:1/x", S3Presigned: good})
		if a.status != http.StatusBadRequest {
			t.Fatalf("status %d: %s; want 400", a.status, a.body)
		}
	})
	t.Run("a second reader costs the store nothing", func(t *testing.T) {
		before := store.bytes.Load()
		n.register(t, req("p3", presign(t, store.srv.URL, "AKIDGOOD", oi)))
		if got := store.bytes.Load() - before; got > 1 {
			t.Errorf("the store sent %d more bytes", got)
		}
	})

	_, status := n.status(t)
	for _, where := range []string{n.logs.String(), string(status)} {
		for _, s := range secrets {
			if s == "" || strings.Contains(where, s) {
				t.Fatalf("a presigned URL's signature %q is in the logs or status", s)
			}
		}
		if i := strings.Index(where, "X-Amz-Signature="); i >= 0 && !strings.HasPrefix(where[i+len("X-Amz-Signature="):], "REDACTED") {
			t.Fatalf("unredacted signature in the logs or status: %s", where[i:min(len(where), i+80)])
		}
	}
}

// TestS3PrivateContent: with a cluster token, a peer whose presigned URL
// the store accepts gets a task credential that fetches the object's
// pieces from the seed; a peer whose URL it refuses gets 403 and no task
// credential, so it has nothing to fetch pieces with.
func TestS3PrivateContent(t *testing.T) {
	store := newFakeStore(t, 3<<20+5)
	oi := objstore.ObjectInfo{Bucket: "bkt", Key: "data/obj.bin", ETag: store.etag}
	id := objstore.TaskID(oi, "")
	n := authNode(t, supernode.Config{S3Endpoints: []string{store.srv.URL}})
	req := func(peer, key string) wire.RegisterRequest {
		return wire.RegisterRequest{PeerID: peer, Host: peerHost(peer, 1), URL: "s3://bkt/data/obj.bin", TaskID: id,
			S3Presigned: presign(t, store.srv.URL, key, oi)}
	}
	good, _ := n.registerAs(t, clusterToken, req("peer-a", "AKIDGOOD"))
	if good.TaskCredential == "" {
		t.Fatal("an accepted registrant got no task credential")
	}
	n.waitDoneAs(t, id)
	piece := fmt.Sprintf("/peer/tasks/%s/pieces/0", id)
	if a := n.call(t, "GET", piece, good.TaskCredential, nil, nil); a.status != http.StatusOK || !bytes.Equal(a.body, store.data[:len(a.body)]) {
		t.Fatalf("piece with the accepted registrant's credential: status %d", a.status)
	}
	a := n.call(t, "POST", "/api/v1/tasks/register", clusterToken, req("peer-b", "AKIDBAD"), nil)
	if a.status != http.StatusForbidden || strings.Contains(string(a.body), "taskCredential") {
		t.Fatalf("refused registrant: status %d: %s; want 403 without a task credential", a.status, a.body)
	}
	if a := n.call(t, "GET", piece, clusterToken, nil, nil); a.status != http.StatusUnauthorized {
		t.Fatalf("piece with the cluster token only: status %d, want 401", a.status)
	}
}
