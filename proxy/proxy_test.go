package proxy_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/proxy"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// TestMirrorBlobRanges serves one blob through P2P with and without
// Range and checks status, headers and bytes as http.ServeContent would
// give them.
func TestMirrorBlobRanges(t *testing.T) {
	reg := newFakeRegistry(t, testenv.FakeAuth{})
	const size = 3<<20 + 12345
	layer, data, _ := reg.AddImage("app", "v1", size)
	c := startCluster(t, proxy.Config{Registry: reg.URL}, "")
	blobURL := c.srv.URL + "/v2/app/blobs/" + layer.String()

	tests := []struct {
		name       string
		headers    []string
		wantStatus int
		wantBody   []byte
		wantRange  string
	}{
		{"full", nil, 200, data, ""},
		{"first 100", []string{"Range: bytes=0-99"}, 206, data[:100], fmt.Sprintf("bytes 0-99/%d", size)},
		{"from 100", []string{"Range: bytes=100-"}, 206, data[100:], fmt.Sprintf("bytes 100-%d/%d", size-1, size)},
		{"last 100", []string{"Range: bytes=-100"}, 206, data[size-100:], fmt.Sprintf("bytes %d-%d/%d", size-100, size-1, size)},
		{"across pieces", []string{"Range: bytes=1048570-2097160"}, 206, data[1048570:2097161], fmt.Sprintf("bytes 1048570-2097160/%d", size)},
		{"past the end clamps", []string{fmt.Sprintf("Range: bytes=%d-%d", size-10, size+1000)}, 206, data[size-10:], fmt.Sprintf("bytes %d-%d/%d", size-10, size-1, size)},
		{"unsatisfiable", []string{fmt.Sprintf("Range: bytes=%d-", size)}, 416, nil, fmt.Sprintf("bytes */%d", size)},
		{"if-none-match", []string{`If-None-Match: "` + layer.String() + `"`}, 304, nil, ""},
		{"if-range mismatch gives all", []string{"Range: bytes=0-9", `If-Range: "sha256:other"`}, 200, data, ""},
		{"if-range match gives range", []string{"Range: bytes=0-9", `If-Range: "` + layer.String() + `"`}, 206, data[:10], fmt.Sprintf("bytes 0-9/%d", size)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, blobURL, tc.headers...)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %.200q)", resp.StatusCode, tc.wantStatus, body)
			}
			if resp.Header.Get("X-Damselfly-Task") != manifest.DigestTaskID(layer) {
				t.Errorf("X-Damselfly-Task = %q: not served through P2P", resp.Header.Get("X-Damselfly-Task"))
			}
			if tc.wantStatus == 416 || tc.wantStatus == 304 {
				if got := resp.Header.Get("Content-Range"); tc.wantRange != "" && got != tc.wantRange {
					t.Errorf("Content-Range %q, want %q", got, tc.wantRange)
				}
				return
			}
			if !bytes.Equal(body, tc.wantBody) {
				t.Errorf("body: %d bytes, want %d (first differ at %d)", len(body), len(tc.wantBody), firstDiff(body, tc.wantBody))
			}
			if got := resp.Header.Get("Content-Range"); got != tc.wantRange {
				t.Errorf("Content-Range %q, want %q", got, tc.wantRange)
			}
			if got := resp.Header.Get("Docker-Content-Digest"); got != layer.String() {
				t.Errorf("Docker-Content-Digest %q", got)
			}
			if resp.ContentLength != int64(len(tc.wantBody)) {
				t.Errorf("Content-Length %d, want %d", resp.ContentLength, len(tc.wantBody))
			}
		})
	}
	t.Run("multiple ranges", func(t *testing.T) {
		resp, body := get(t, blobURL, "Range: bytes=0-9,20-29")
		if resp.StatusCode != 206 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") {
			t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !bytes.Contains(body, data[20:30]) {
			t.Error("multipart body lacks the second range")
		}
	})
	st := c.proxy.Stats()
	if st.Verified != 2 || st.DigestMismatches != 0 || st.Fallbacks != 0 {
		t.Errorf("stats %+v: want 2 verified full bodies (full, if-range mismatch), no mismatch, no fallback", st)
	}
	// The registry served the blob about once (to the seed), whatever the
	// clients asked for.
	if got := reg.BlobBytes(); got > size+(1<<20) {
		t.Errorf("registry served %d blob bytes for a %d-byte blob", got, size)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestMirrorStreamsBeforeComplete checks that the first bytes of a blob
// reach the client before the whole blob is in the store.
func TestMirrorStreamsBeforeComplete(t *testing.T) {
	reg := newFakeRegistry(t, testenv.FakeAuth{})
	const size = 24 << 20
	layer, data, _ := reg.AddImage("app", "v1", size)
	// Slow the registry down: ~8 MiB/s, so the blob takes ~3s.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg.ServeHTTP(&slowWriter{ResponseWriter: w, perWrite: 4 * time.Millisecond}, r)
	}))
	t.Cleanup(slow.Close)
	c := startCluster(t, proxy.Config{Registry: slow.URL}, "")
	start := time.Now()
	resp, err := http.Get(c.srv.URL + "/v2/app/blobs/" + layer.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	firstAt := time.Since(start)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	if !bytes.Equal(append(first, rest...), data) {
		t.Fatal("body differs from the blob")
	}
	t.Logf("first MiB after %v, all %d MiB after %v", firstAt.Round(time.Millisecond), size>>20, total.Round(time.Millisecond))
	if firstAt > total/2 {
		t.Errorf("first MiB arrived after %v of %v: the body was not streamed as pieces arrived", firstAt, total)
	}
}

type slowWriter struct {
	http.ResponseWriter
	perWrite time.Duration
}

func (s *slowWriter) Write(b []byte) (int, error) {
	time.Sleep(s.perWrite)
	return s.ResponseWriter.Write(b)
}

// TestMirrorPassthrough checks that manifests, HEAD, tags and errors go
// to the registry unchanged, and that ?ns= picks the upstream.
func TestMirrorPassthrough(t *testing.T) {
	def := newFakeRegistry(t, testenv.FakeAuth{})
	other := newFakeRegistry(t, testenv.FakeAuth{})
	layer, _, md := def.AddImage("app", "v1", 1000)
	_, _, omd := other.AddImage("app", "v2", 1000)
	c := startCluster(t, proxy.Config{Registry: def.URL, Insecure: []string{other.Host}}, "")

	tests := []struct {
		name, method, path string
		wantStatus         int
		wantDigest         string
		reg                *testenv.FakeRegistry
	}{
		{"manifest by tag", "GET", "/v2/app/manifests/v1", 200, md.String(), def},
		{"manifest HEAD", "HEAD", "/v2/app/manifests/v1", 200, md.String(), def},
		{"blob HEAD passes through", "HEAD", "/v2/app/blobs/" + layer.String(), 200, layer.String(), def},
		{"unknown manifest", "GET", "/v2/app/manifests/nope", 404, "", def},
		{"ping", "GET", "/v2/", 200, "", def},
		{"ns picks another registry", "GET", "/v2/app/manifests/v2?ns=" + other.Host, 200, omd.String(), other},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tc.reg.Requests())
			resp, _ := do(t, tc.method, c.srv.URL+tc.path)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if got := resp.Header.Get("Docker-Content-Digest"); got != tc.wantDigest {
				t.Errorf("Docker-Content-Digest %q, want %q", got, tc.wantDigest)
			}
			if resp.Header.Get("X-Damselfly-Task") != "" {
				t.Error("served through P2P; want pass-through")
			}
			seen := tc.reg.Requests()[before:]
			if len(seen) != 1 || strings.Contains(seen[0], "ns=") {
				t.Errorf("registry saw %q; want the one request, without ns", seen)
			}
		})
	}
	if resp, _ := get(t, c.srv.URL+"/v2/app/manifests/v1?ns=bad/host"); resp.StatusCode != 400 {
		t.Errorf("bad ns: status %d, want 400", resp.StatusCode)
	}
	if resp, _ := get(t, c.srv.URL+"/other"); resp.StatusCode != 404 {
		t.Errorf("non-registry path: status %d, want 404", resp.StatusCode)
	}
}

// TestMirrorAnonymousTokenNoStampede pulls one image with 16 concurrent
// clients that send no credentials from a registry that wants bearer
// tokens: the mirror gets one anonymous token and shares it.
func TestMirrorAnonymousTokenNoStampede(t *testing.T) {
	reg := newFakeRegistry(t, testenv.FakeAuth{Scheme: "bearer", Anonymous: true, Scope: true, Token: "anon-token-123"})
	layer, data, _ := reg.AddImage("app", "v1", 2<<20)
	c := startCluster(t, proxy.Config{Registry: reg.URL}, "")
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, path := range []string{"/v2/app/manifests/v1", "/v2/app/blobs/" + layer.String()} {
				resp, err := http.Get(c.srv.URL + path)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					errs <- fmt.Errorf("%s: %d %v", path, resp.StatusCode, err)
					return
				}
				if strings.Contains(path, "blobs") && !bytes.Equal(body, data) {
					errs <- fmt.Errorf("blob body differs")
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := reg.TokenRequests(); n != 1 {
		t.Errorf("token server got %d requests for 16 concurrent pulls, want 1", n)
	}
	if st := c.proxy.Stats(); st.P2PRequests != 16 || st.Fallbacks != 0 {
		t.Errorf("stats %+v: want 16 P2P blob responses, no fallback", st)
	}
	if strings.Contains(c.logs.String(), reg.Token()) {
		t.Error("the token appears in the logs")
	}
	// A token the registry stops accepting early is dropped and replaced.
	reg.RotateToken("anon-token-789")
	if resp, _ := get(t, c.srv.URL+"/v2/app/manifests/v1"); resp.StatusCode != 200 {
		t.Errorf("after the registry rotated its tokens: status %d", resp.StatusCode)
	}
	if n := reg.TokenRequests(); n != 2 {
		t.Errorf("token requests after rotation: %d, want 2", n)
	}
}

// TestMirrorClientBearerFlow: anonymous tokens are refused, so the client
// sees the registry's challenge through the mirror, gets a token with its
// own credentials from the realm, and comes back with it. The blob then
// goes P2P with the client's token reaching the registry (through the
// seed), and neither the token nor the password is logged.
func TestMirrorClientBearerFlow(t *testing.T) {
	reg := newFakeRegistry(t, testenv.FakeAuth{Scheme: "bearer", Scope: true, Token: "secret-token-456",
		Users: map[string]string{"alice": "pa55word"}})
	layer, data, _ := reg.AddImage("app", "v1", 1<<20)
	c := startCluster(t, proxy.Config{Registry: reg.URL}, "")

	resp, _ := get(t, c.srv.URL+"/v2/app/manifests/v1")
	if resp.StatusCode != 401 {
		t.Fatalf("anonymous manifest GET: status %d, want the registry's 401", resp.StatusCode)
	}
	ch := resp.Header.Get("WWW-Authenticate")
	if !strings.Contains(ch, reg.URL) || !strings.Contains(ch, "repository:app:pull") {
		t.Fatalf("challenge %q does not come from the registry unchanged", ch)
	}
	// The client's token flow, at the realm the challenge named.
	tresp, tbody := get(t, reg.URL+"/token?service=fake&scope=repository:app:pull", "Authorization: "+basic("alice", "pa55word"))
	if tresp.StatusCode != 200 || !strings.Contains(string(tbody), reg.Token()) {
		t.Fatalf("token: %d %s", tresp.StatusCode, tbody)
	}
	auth := "Authorization: Bearer " + reg.Token()
	if resp, _ := get(t, c.srv.URL+"/v2/app/manifests/v1", auth); resp.StatusCode != 200 {
		t.Fatalf("manifest with token: %d", resp.StatusCode)
	}
	resp, body := get(t, c.srv.URL+"/v2/app/blobs/"+layer.String(), auth)
	if resp.StatusCode != 200 || !bytes.Equal(body, data) || resp.Header.Get("X-Damselfly-Task") == "" {
		t.Fatalf("blob with token: status %d, %d bytes, task %q", resp.StatusCode, len(body), resp.Header.Get("X-Damselfly-Task"))
	}
	seen := reg.BlobAuth()
	if len(seen) == 0 {
		t.Fatal("the registry saw no blob GET")
	}
	for _, a := range seen {
		if a != "Bearer "+reg.Token() {
			t.Errorf("registry blob GET carried Authorization %q, want the client's token", a)
		}
	}
	logs := c.logs.String()
	for _, secret := range []string{reg.Token(), "pa55word", basic("alice", "pa55word")} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a credential (%q)", secret[:4])
		}
	}
	// The supernode's status does not show it either.
	_, st := get(t, c.snURL+"/api/v1/status")
	if strings.Contains(string(st), reg.Token()) {
		t.Error("supernode status shows the token")
	}
}

// TestMirrorDigestMismatch: a registry serving the wrong bytes for a
// digest gets the response aborted before its end (the seed gives up on
// content that fails its digest check, and the proxy would not end a body
// that does).
func TestMirrorDigestMismatch(t *testing.T) {
	reg := newFakeRegistry(t, testenv.FakeAuth{})
	bad := digest.FromString("what the client expects")
	reg.PutBlobAt(bad, bytes.Repeat([]byte("x"), 3<<20))
	c := startCluster(t, proxy.Config{Registry: reg.URL}, "")
	resp, err := http.Get(c.srv.URL + "/v2/app/blobs/" + bad.String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && err == nil {
		t.Fatalf("read %d bytes without error; want the response cut short", n)
	}
	if n >= 3<<20 {
		t.Errorf("client got all %d bytes", n)
	}
	if st := c.proxy.Stats(); st.Verified != 0 {
		t.Errorf("stats %+v: want nothing verified", st)
	}
}

// TestMirrorFallbackWithoutSupernode: with no supernode reachable and
// nothing cached, the daemon reads the blob straight from the registry
// itself (direct mode), checked against its digest and kept for later;
// what it cannot open passes through.
func TestMirrorFallbackWithoutSupernode(t *testing.T) {
	reg := newFakeRegistry(t, testenv.FakeAuth{})
	layer, data, _ := reg.AddImage("app", "v1", 100000)
	c := startCluster(t, proxy.Config{Registry: reg.URL}, "127.0.0.1:1")
	resp, body := get(t, c.srv.URL+"/v2/app/blobs/"+layer.String())
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
	}
	if st := c.proxy.Stats(); st.P2PRequests != 1 || st.Verified != 1 || st.Fallbacks != 0 {
		t.Errorf("stats %+v: want one blob served by the daemon itself, digest verified, no fallback", st)
	}
	// Unknown blobs get the registry's own 404 (through the fallback).
	resp, body = get(t, c.srv.URL+"/v2/app/blobs/"+digest.FromString("nope").String())
	if resp.StatusCode != 404 || !strings.Contains(string(body), "BLOB_UNKNOWN") {
		t.Errorf("unknown blob: %d %s", resp.StatusCode, body)
	}
}

// TestForwardProxyOffByDefault: without Config.ForwardProxy, neither an
// absolute-URI request nor CONNECT reaches the origin; both get a 403 that
// says how to turn them on.
func TestForwardProxyOffByDefault(t *testing.T) {
	var hits atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "secret")
	}))
	t.Cleanup(origin.Close)
	c := startCluster(t, proxy.Config{}, "")
	pu, _ := url.Parse(c.srv.URL)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	tests := []struct {
		name, url string
	}{
		{"absolute URI", origin.URL + "/files/x"},
		{"CONNECT", "https://" + strings.TrimPrefix(origin.URL, "http://") + "/files/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Get(tc.url)
			if tc.name == "CONNECT" {
				// Go's client reports a refused CONNECT as an error
				// carrying the proxy's status.
				if err == nil {
					resp.Body.Close()
					t.Fatalf("CONNECT through a proxy with the forward proxy off: %s", resp.Status)
				}
				if !strings.Contains(err.Error(), "Forbidden") {
					t.Errorf("CONNECT error %q, want the proxy's 403", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "--forward-proxy") {
				t.Errorf("got %s %q, want 403 naming --forward-proxy", resp.Status, body)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("origin reached %d times through a proxy with the forward proxy off", n)
	}
}

// TestForwardProxy uses the proxy as an HTTP proxy (curl -x): rules choose
// P2P or direct; CONNECT tunnels https.
func TestForwardProxy(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 200000)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"v1"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(payload))
	}))
	t.Cleanup(origin.Close)
	rules := []proxy.Rule{}
	for _, s := range []string{"direct:/files/direct/", "p2p:/files/"} {
		r, err := proxy.ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	c := startCluster(t, proxy.Config{Rules: rules, ForwardProxy: true}, "")
	pu, _ := url.Parse(c.srv.URL)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

	tests := []struct {
		path    string
		range_  string
		wantP2P bool
		want    []byte
		status  int
	}{
		{"/files/a.bin", "", true, payload, 200},
		{"/files/a.bin", "bytes=10-19", true, payload[10:20], 206},
		{"/files/direct/b.bin", "", false, payload, 200},
		{"/other/c.bin", "", false, payload, 200},
	}
	for _, tc := range tests {
		t.Run(tc.path+" "+tc.range_, func(t *testing.T) {
			req, _ := http.NewRequest("GET", origin.URL+tc.path, nil)
			if tc.range_ != "" {
				req.Header.Set("Range", tc.range_)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !bytes.Equal(body, tc.want) {
				t.Fatalf("status %d, %d bytes; want %d, %d bytes", resp.StatusCode, len(body), tc.status, len(tc.want))
			}
			if got := resp.Header.Get("X-Damselfly-Task") != ""; got != tc.wantP2P {
				t.Errorf("served through P2P: %v, want %v", got, tc.wantP2P)
			}
		})
	}
	tlsOrigin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "over tls")
	}))
	t.Cleanup(tlsOrigin.Close)
	resp, err := client.Get(tlsOrigin.URL + "/x")
	if err != nil {
		t.Fatalf("https through CONNECT: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "over tls" {
		t.Errorf("CONNECT body %q", body)
	}
	if st := c.proxy.Stats(); st.Tunnels != 1 {
		t.Errorf("stats %+v: want one tunnel", st)
	}
}

func TestParseAndLoadRules(t *testing.T) {
	tests := []struct {
		in      string
		direct  bool
		wantErr bool
	}{
		{"blobs/sha256.*", false, false},
		{"p2p:/files/", false, false},
		{"direct:no-p2p", true, false},
		{"direct:", false, true},
		{"a(b", false, true},
	}
	for _, tc := range tests {
		r, err := proxy.ParseRule(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseRule(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && r.Direct != tc.direct {
			t.Errorf("ParseRule(%q).Direct = %v", tc.in, r.Direct)
		}
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "rules.json")
	os.WriteFile(good, []byte(`{"proxies": [{"regx": "blobs/sha256.*"}, {"regx": "reg.example/", "use_https": true}, {"regx": "no-p2p", "direct": true}, {"regx": "old", "redirect": "new.example:5000"}]}`), 0o644)
	rules, err := proxy.LoadRules(good)
	if err != nil || len(rules) != 4 || !rules[1].UseHTTPS || !rules[2].Direct || rules[3].Redirect != "new.example:5000" {
		t.Errorf("LoadRules = %+v, %v", rules, err)
	}
	list := filepath.Join(dir, "list.json")
	os.WriteFile(list, []byte(`[{"regx": "x"}]`), 0o644)
	if rules, err := proxy.LoadRules(list); err != nil || len(rules) != 1 {
		t.Errorf("LoadRules(bare list) = %+v, %v", rules, err)
	}
	for _, bad := range []string{`{"proxies": [{"regx": "("}]}`, `{"proxies": [{"regx": "x", "redirect": "a/b"}]}`, `not json`} {
		p := filepath.Join(dir, "bad.json")
		os.WriteFile(p, []byte(bad), 0o644)
		if _, err := proxy.LoadRules(p); err == nil {
			t.Errorf("LoadRules(%s): no error", bad)
		}
	}
	if _, err := proxy.New(proxy.Config{Registry: "ftp://x"}); err == nil {
		t.Error("New accepted an ftp registry")
	}
}
