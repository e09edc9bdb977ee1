package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rangeStore serves ranged GETs of canned objects of bucket bkt, checking
// If-Match against each object's ETag ("etag-KEY").
func rangeStore(t *testing.T, objects map[string][]byte, gets *atomic.Int64) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/bkt/")
		data, ok := objects[key]
		if !ok || r.Method != http.MethodGet {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		gets.Add(1)
		if r.Header.Get("If-Match") != `"etag-`+key+`"` {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusPreconditionFailed)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>m</Message></Error>`)
			return
		}
		from, to, _ := strings.Cut(strings.TrimPrefix(r.Header.Get("Range"), "bytes="), "-")
		a, _ := strconv.Atoi(from)
		b := len(data) - 1
		if to != "" {
			b, _ = strconv.Atoi(to)
		}
		w.Header().Set("Content-Length", strconv.Itoa(b-a+1))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[a : b+1])
	}))
	t.Cleanup(srv.Close)
	c, err := New(context.Background(), Options{Endpoint: srv.URL, PathStyle: true, Region: "us-east-1",
		AccessKeyID: "AKID", SecretAccessKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPack(t *testing.T) {
	objects := map[string][]byte{}
	var infos []ObjectInfo
	var whole []byte
	for i := range 40 {
		key := fmt.Sprintf("d/f%02d", i)
		data := bytes.Repeat([]byte{byte(i)}, 100+i*13)
		if i == 7 {
			data = nil // empty: not in the pack
		}
		objects[key] = data
		whole = append(whole, data...)
		// Given out of order: the pack sorts by key.
		infos = append([]ObjectInfo{{Bucket: "bkt", Key: key, Size: int64(len(data)), ETag: `"etag-` + key + `"`}}, infos...)
	}
	var gets atomic.Int64
	c := rangeStore(t, objects, &gets)
	p, err := NewPack("bkt", infos)
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != int64(len(whole)) || p.Len() != 39 {
		t.Fatalf("pack of %d bytes, %d objects; want %d, 39", p.Size(), p.Len(), len(whole))
	}
	if _, _, ok := p.Member("d/f07"); ok {
		t.Error("the empty object is a member")
	}
	if off, size, ok := p.Member("d/f03"); !ok || size != 139 || !bytes.Equal(whole[off:off+size], objects["d/f03"]) {
		t.Errorf("Member(d/f03) = %d, %d, %v", off, size, ok)
	}
	if _, err := p.GetRange(context.Background(), 0, 10); err == nil {
		t.Error("GetRange without a client succeeded")
	}
	p = p.WithClient(c)
	for _, r := range []struct{ off, n int64 }{{0, 1}, {0, p.Size()}, {50, 1000}, {p.Size() - 3, 3}, {123, 0}} {
		body, err := p.GetRange(context.Background(), r.off, r.n)
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", r.off, r.n, err)
		}
		got, _ := io.ReadAll(body)
		if !bytes.Equal(got, whole[r.off:r.off+r.n]) {
			t.Errorf("GetRange(%d, %d): %d bytes differ", r.off, r.n, len(got))
		}
	}
	if _, err := p.GetRange(context.Background(), p.Size()-3, 4); err == nil {
		t.Error("GetRange past the end succeeded")
	}

	// The identity depends on the objects' keys, ETags and sizes only.
	same, _ := NewPack("bkt", infos[5:])
	again, _ := NewPack("bkt", append(infos[5:], infos[:5]...))
	if p.Identity() != again.Identity() || p.Identity() == same.Identity() {
		t.Errorf("identities: %q, reordered %q, fewer objects %q", p.Identity(), again.Identity(), same.Identity())
	}
	changed := append([]ObjectInfo{}, infos...)
	changed[0].ETag = "other"
	other, _ := NewPack("bkt", changed)
	if other.Identity() == p.Identity() {
		t.Error("a changed ETag kept the pack's identity")
	}
	// ... and reading with a stale ETag fails.
	if _, err := other.WithClient(c).GetRange(context.Background(), 0, other.Size()); !errors.Is(err, ErrObjectChanged) {
		t.Errorf("GetRange of a changed object: %v, want ErrObjectChanged", err)
	}

	for _, bad := range [][]ObjectInfo{
		{{Bucket: "other", Key: "k", Size: 1, ETag: "e"}},
		{{Bucket: "bkt", Key: "k", Size: 1}},
		{{Bucket: "bkt", Key: "k", Size: -1, ETag: "e"}},
		{{Bucket: "bkt", Key: "k", Size: 1, ETag: "e"}, {Bucket: "bkt", Key: "k", Size: 1, ETag: "e"}},
	} {
		if _, err := NewPack("bkt", bad); err == nil {
			t.Errorf("NewPack(%+v) accepted", bad)
		}
	}
}

// TestListStopsOnRepeatedToken: a store that sends the same continuation
// token again does not make a listing loop forever.
func TestListStopsOnRepeatedToken(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bkt</Name><Prefix>d/</Prefix>`+
			`<IsTruncated>true</IsTruncated><NextContinuationToken>same</NextContinuationToken>`+
			`<Contents><Key>d/k%d</Key><Size>1</Size><ETag>"e"</ETag></Contents></ListBucketResult>`, n)
	}))
	t.Cleanup(srv.Close)
	c, err := New(context.Background(), Options{Endpoint: srv.URL, PathStyle: true, Region: "us-east-1", AccessKeyID: "AKID", SecretAccessKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, err := range c.List(context.Background(), "bkt", "d/") {
		if err != nil {
			break
		}
		if n++; n > 10 {
			t.Fatal("the listing goes on and on")
		}
	}
	if n != 2 || requests.Load() != 2 {
		t.Errorf("listed %d entries in %d requests; want the 2 pages before the repeated token", n, requests.Load())
	}
}

// TestPackBackgroundSlots: background GETs of many packs stay within the
// client's slots, and a read's GETs do not wait behind them.
func TestPackBackgroundSlots(t *testing.T) {
	objects := map[string][]byte{}
	var infos []ObjectInfo
	for i := range 160 {
		key := fmt.Sprintf("d/%03d", i)
		objects[key] = []byte{byte(i)}
		infos = append(infos, ObjectInfo{Bucket: "bkt", Key: key, Size: 1, ETag: "etag-" + key})
	}
	var inFlight, most atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/bkt/")
		if key != "d/159" { // the read's object is served at once
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-release
		}
		w.Header().Set("Content-Length", "1")
		w.WriteHeader(http.StatusPartialContent)
		w.Write(objects[key])
	}))
	t.Cleanup(srv.Close)
	c, err := New(context.Background(), Options{Endpoint: srv.URL, PathStyle: true, Region: "us-east-1", AccessKeyID: "AKID", SecretAccessKey: "s",
		HTTPClient: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPack("bkt", infos)
	if err != nil {
		t.Fatal(err)
	}
	p = p.WithClient(c)
	bg := WithBackground(context.Background())
	done := make(chan error, 10)
	for i := range 9 { // 9 background ranges of 16 objects: 144 GETs
		go func() {
			_, err := p.GetRange(bg, int64(16*i), 16)
			done <- err
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); inFlight.Load() < maxBackgroundGets && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if m := most.Load(); m != maxBackgroundGets {
		t.Errorf("%d background GETs in flight at most, want %d", m, maxBackgroundGets)
	}
	body, err := p.GetRange(context.Background(), 159, 1)
	if err != nil {
		t.Fatalf("a read behind blocked background GETs: %v", err)
	}
	if b, _ := io.ReadAll(body); len(b) != 1 || b[0] != 159 {
		t.Errorf("read %v", b)
	}
	close(release)
	for range 9 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
