package testenv

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The store proxy passes requests through with the client's Host (SigV4
// signs it) and counts object bodies apart from listings and errors.
func TestStoreProxyCounts(t *testing.T) {
	object := bytes.Repeat([]byte("x"), 3000)
	var hosts []string
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts = append(hosts, r.Host)
		switch r.URL.Path {
		case "/bucket/", "/bucket":
			io.WriteString(w, "<ListBucketResult/>") // 19 bytes
		case "/bucket/dir/key":
			if r.Header.Get("Range") != "" {
				w.WriteHeader(http.StatusPartialContent)
				w.Write(object[:100])
				return
			}
			w.Write(object)
		default:
			http.Error(w, "NoSuchKey", http.StatusNotFound)
		}
	}))
	defer store.Close()
	p := StartStoreProxy(t, "")
	get := func(path, rng string) int {
		req, _ := http.NewRequest(http.MethodGet, p.URL+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/bucket/dir/key", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("before setStore: status %d, want 503", code)
	}
	if err := p.SetStore(store.URL); err != nil {
		t.Fatal(err)
	}
	get("/bucket/dir/key", "")
	get("/bucket/dir/key", "bytes=0-99")
	get("/bucket/?list-type=2", "")
	get("/bucket/missing", "")
	s := p.Counts()
	if s.ObjectBytes != 3100 || s.ObjectGets != 3 {
		t.Errorf("object bytes %d in %d GETs, want 3100 in 3 (one answered 404)", s.ObjectBytes, s.ObjectGets)
	}
	if s.OtherBytes != 19+int64(len("NoSuchKey\n")) || s.Lists != 1 {
		t.Errorf("other bytes %d, %d listings; want the listing's and the error's, 1", s.OtherBytes, s.Lists)
	}
	if s.Answers != 4 || s.Requests != 5 || s.Bytes() != s.ObjectBytes+s.OtherBytes {
		t.Errorf("%d answers of %d requests, want 4 of 5 (one before SetStore)", s.Answers, s.Requests)
	}
	for _, h := range hosts {
		if h != p.Addr {
			t.Errorf("the store saw Host %q, want the proxy's %q (what the client signed)", h, p.Addr)
		}
	}
}
