package supernode_test

import (
	"bytes"
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

// packStore stands in for an S3 store holding many small objects of
// bucket "bkt", answering presigned GETs signed by "AKIDGOOD" or "AKIDGOOD2" only (and
// refusing HEAD, as GET-only signatures are refused).
type packStore struct {
	srv      *httptest.Server
	objs     map[string][]byte // key -> content
	requests atomic.Int64
	bytes    atomic.Int64
}

func newPackStore(t *testing.T, n int) (*packStore, []objstore.ObjectInfo) {
	t.Helper()
	s := &packStore{objs: map[string][]byte{}}
	rng := rand.New(rand.NewSource(18))
	var infos []objstore.ObjectInfo
	for i := range n {
		data := make([]byte, 1+rng.Intn(96<<10))
		if i%17 == 0 {
			data = make([]byte, 600<<10+rng.Intn(400<<10)) // some near PackMaxObject
		}
		rng.Read(data)
		key := fmt.Sprintf("dir/f-%04d.bin", i)
		s.objs[key] = data
		infos = append(infos, objstore.ObjectInfo{Bucket: "bkt", Key: key, Size: int64(len(data)), ETag: etagOf(data)})
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		q := r.URL.Query()
		akid, _, _ := strings.Cut(q.Get("X-Amz-Credential"), "/")
		if r.Method != http.MethodGet || (akid != "AKIDGOOD" && akid != "AKIDGOOD2") || q.Get("X-Amz-Signature") == "" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		data, ok := s.objs[strings.TrimPrefix(r.URL.Path, "/bkt/")]
		if !ok || !strings.HasPrefix(r.URL.Path, "/bkt/") {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", `"`+etagOf(data)+`"`)
		http.ServeContent(countingWriter{w, &s.bytes}, r, "", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(s.srv.Close)
	return s, infos
}

func etagOf(data []byte) string {
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}

// packRequest is a pack registration of infos signed by access key akid.
func packRequest(t *testing.T, peer, endpoint, akid string, infos []objstore.ObjectInfo) wire.RegisterRequest {
	t.Helper()
	pack, err := objstore.NewPack("bkt", infos)
	if err != nil {
		t.Fatal(err)
	}
	req := wire.RegisterRequest{PeerID: peer, Host: peerHost(peer, 1), URL: "s3://bkt/dir/", TaskID: objstore.PackTaskID(pack, ""), Lazy: true}
	for _, oi := range pack.Objects() {
		req.S3Pack = append(req.S3Pack, wire.S3PackMember{Key: oi.Key, ETag: oi.ETag, Size: oi.Size,
			Presigned: presign(t, endpoint, akid, oi)})
	}
	return req
}

func TestS3PackRegistration(t *testing.T) {
	store, infos := newPackStore(t, 120)
	var want []byte
	for _, oi := range infos {
		want = append(want, store.objs[oi.Key]...)
	}
	n := startNode(t, supernode.Config{S3Endpoints: []string{store.srv.URL}})
	good := packRequest(t, "p1", store.srv.URL, "AKIDGOOD", infos)
	var secrets []string
	for _, m := range good.S3Pack {
		u, _ := url.Parse(m.Presigned)
		secrets = append(secrets, u.Query().Get("X-Amz-Signature"))
	}
	port := strings.Split(store.srv.URL, ":")[2]

	hostile := []struct {
		name   string
		mutate func(r *wire.RegisterRequest)
		status int
		says   string
	}{
		{"member URL for another key", func(r *wire.RegisterRequest) {
			r.S3Pack[3].Presigned = r.S3Pack[4].Presigned
		}, http.StatusForbidden, "another object"},
		{"member URL for another bucket", func(r *wire.RegisterRequest) {
			oi := infos[5]
			oi.Bucket = "other"
			r.S3Pack[5].Presigned = presign(t, store.srv.URL, "AKIDGOOD", oi)
		}, http.StatusForbidden, "another object"},
		{"member URL for another host", func(r *wire.RegisterRequest) {
			r.S3Pack[7].Presigned = strings.Replace(presign(t, "http://127.0.0.2:"+port, "AKIDGOOD", infos[7]), "127.0.0.2", "localhost", 1)
		}, http.StatusForbidden, "not an allowed s3 endpoint"},
		{"member list that does not give the task ID", func(r *wire.RegisterRequest) {
			r.S3Pack = r.S3Pack[1:]
		}, http.StatusConflict, "does not give the registered task ID"},
		{"task ID of another tag", func(r *wire.RegisterRequest) {
			r.Tag = "x"
		}, http.StatusConflict, "does not give the registered task ID"},
		{"member the store refuses", func(r *wire.RegisterRequest) {
			r.S3Pack[9].Presigned = presign(t, store.srv.URL, "AKIDBAD", infos[9])
		}, http.StatusForbidden, "the store refused the presigned URL"},
		{"member listed with another version", func(r *wire.RegisterRequest) {
			mod := append([]objstore.ObjectInfo(nil), infos...)
			mod[11].ETag = "0123456789abcdef0123456789abcdef"
			*r = packRequest(t, "p1", store.srv.URL, "AKIDGOOD", mod)
		}, http.StatusConflict, "another version"},
		{"duplicate member", func(r *wire.RegisterRequest) {
			r.S3Pack[2] = r.S3Pack[1]
		}, http.StatusBadRequest, "given twice"},
		{"member out of the directory", func(r *wire.RegisterRequest) {
			r.URL = "s3://bkt/elsewhere/"
		}, http.StatusBadRequest, "not under the directory"},
		{"member too large for a pack", func(r *wire.RegisterRequest) {
			r.S3Pack[0].Size = objstore.PackMaxObject
		}, http.StatusBadRequest, "not that of a pack member"},
		{"too many members", func(r *wire.RegisterRequest) {
			m := r.S3Pack[0]
			r.S3Pack = nil
			for i := range objstore.PackSwarmMax + 1 {
				m.Key = fmt.Sprintf("dir/%06d", i)
				r.S3Pack = append(r.S3Pack, m)
			}
		}, http.StatusBadRequest, "at most"},
		{"pack on an object URL", func(r *wire.RegisterRequest) {
			r.URL = "s3://bkt/dir/f-0000.bin"
		}, http.StatusBadRequest, "names its directory"},
		{"pack on a plain URL", func(r *wire.RegisterRequest) {
			r.URL = "http://127.0.0.1:1/dir/"
		}, http.StatusBadRequest, "only for s3://"},
	}
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			r.S3Pack = append([]wire.S3PackMember(nil), good.S3Pack...)
			tc.mutate(&r)
			a := n.post(t, "/api/v1/tasks/register", r)
			if a.status != tc.status || !strings.Contains(string(a.body), tc.says) {
				t.Fatalf("status %d: %s; want %d saying %q", a.status, a.body, tc.status, tc.says)
			}
			if strings.Contains(string(a.body), "taskCredential") {
				t.Error("a refused registrant got a task credential")
			}
		})
	}

	before := store.bytes.Load()
	reg := n.register(t, good)
	if reg.TaskID != good.TaskID || reg.Length != int64(len(want)) {
		t.Fatalf("registered %s of %d bytes, want %s of %d", reg.TaskID, reg.Length, good.TaskID, len(want))
	}
	good.Lazy = false // the fill
	n.register(t, good)
	n.waitDone(t, good.TaskID)
	sum := sha256.Sum256(want)
	if got := n.seedContent(t, reg); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("seed content sha256 %s, want %x", got, sum)
	}
	served := store.bytes.Load() - before
	t.Logf("pack of %d objects, %d bytes in %d pieces: the store sent %d bytes (%.3f copies)",
		len(infos), len(want), reg.Layout().NumPieces(), served, float64(served)/float64(len(want)))
	if served < int64(len(want)) || served > int64(len(want))*11/10 {
		t.Errorf("the store sent %d bytes for a pack of %d", served, len(want))
	}

	t.Run("an accepted member list is remembered", func(t *testing.T) {
		before := store.requests.Load()
		n.register(t, good)
		if got := store.requests.Load() - before; got != 0 {
			t.Errorf("registering again with the same URLs asked the store %d times", got)
		}
	})
	t.Run("a second reader is checked and costs the store no content", func(t *testing.T) {
		before, reqs := store.bytes.Load(), store.requests.Load()
		// Other credentials: URLs signed with the same ones within the
		// same second are the same URLs, which need no new check.
		n.register(t, packRequest(t, "p2", store.srv.URL, "AKIDGOOD2", infos))
		if got := store.requests.Load() - reqs; got < int64(len(infos)) {
			t.Errorf("the store was asked %d times about %d new member URLs", got, len(infos))
		}
		if got := store.bytes.Load() - before; got > int64(len(infos)) {
			t.Errorf("the store sent %d more bytes", got)
		}
		a := n.post(t, "/api/v1/tasks/register", packRequest(t, "p3", store.srv.URL, "AKIDBAD", infos))
		if a.status != http.StatusForbidden {
			t.Errorf("wrong credentials: status %d: %s; want 403", a.status, a.body)
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
	if s := fmt.Sprint(good.S3Pack[0]) + fmt.Sprintf("%#v", good.S3Pack[0]); strings.Contains(s, secrets[0]) {
		t.Fatalf("S3PackMember prints its signature: %s", s)
	}
}
