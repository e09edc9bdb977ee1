package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestOriginServesExactBytes(t *testing.T) {
	o := NewOrigin(t)
	const size = 3<<20 + 123
	want := o.AddRandom("a.bin", size, 42)

	resp, body := do(t, "GET", o.URL("a.bin"), nil)
	if resp.StatusCode != 200 || int64(len(body)) != size {
		t.Fatalf("GET: %s, %d bytes", resp.Status, len(body))
	}
	if got := sum(body); got != want {
		t.Fatalf("sha256 = %s, want %s", got, want)
	}
	if resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("Accept-Ranges = %q", resp.Header.Get("Accept-Ranges"))
	}
	if etag := resp.Header.Get("ETag"); etag != `"`+want[:16]+`"` {
		t.Errorf("ETag = %q", etag)
	}
	if lm := resp.Header.Get("Last-Modified"); lm != OriginModTime.Format(http.TimeFormat) {
		t.Errorf("Last-Modified = %q", lm)
	}
	if got := o.BytesServed("a.bin"); got != size {
		t.Errorf("BytesServed = %d, want %d", got, size)
	}
	if got := o.Requests("a.bin"); got != 1 {
		t.Errorf("Requests = %d", got)
	}

	// Deterministic, seed-dependent, prefix-stable, and equal to RandomReader.
	if again := o.AddRandom("b.bin", size, 42); again != want {
		t.Errorf("same seed gave %s, want %s", again, want)
	}
	if other := o.AddRandom("c.bin", size, 43); other == want {
		t.Error("different seeds gave the same content")
	}
	short := o.AddRandom("short.bin", 1000, 42)
	if short != sum(body[:1000]) {
		t.Error("shorter file with the same seed is not a prefix")
	}
	rr, _ := io.ReadAll(RandomReader(size, 42))
	if !bytes.Equal(rr, body) {
		t.Error("RandomReader differs from the served content")
	}
	if empty := o.AddRandom("empty", 0, 1); empty != sum(nil) {
		t.Errorf("empty file sha = %s", empty)
	}
	if _, b := do(t, "GET", o.URL("empty"), nil); len(b) != 0 {
		t.Errorf("empty file served %d bytes", len(b))
	}

	// Ranges: a 100-byte range counts 100 bytes.
	o.ResetCounters()
	if o.BytesServed("a.bin") != 0 || o.Requests("a.bin") != 0 || o.TotalBytesServed() != 0 {
		t.Fatal("ResetCounters did not reset")
	}
	resp, part := do(t, "GET", o.URL("a.bin"), map[string]string{"Range": "bytes=1000-1099"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, body[1000:1100]) {
		t.Fatalf("range: %s, %d bytes, equal=%v", resp.Status, len(part), bytes.Equal(part, body[1000:1100]))
	}
	if got := o.BytesServed("a.bin"); got != 100 {
		t.Errorf("BytesServed after range = %d, want 100", got)
	}
	resp, part = do(t, "GET", o.URL("a.bin"), map[string]string{"Range": fmt.Sprintf("bytes=%d-", size-10)})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, body[size-10:]) {
		t.Fatalf("suffix range: %s, %d bytes", resp.Status, len(part))
	}
	if got := o.TotalBytesServed(); got != 110 {
		t.Errorf("TotalBytesServed = %d, want 110", got)
	}

	// HEAD counts a request, no bytes.
	resp, _ = do(t, "HEAD", o.URL("a.bin"), nil)
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Errorf("HEAD: %s, length %d", resp.Status, resp.ContentLength)
	}
	if o.Requests("a.bin") != 3 || o.BytesServed("a.bin") != 110 {
		t.Errorf("after HEAD: requests %d bytes %d", o.Requests("a.bin"), o.BytesServed("a.bin"))
	}

	// Conditional requests.
	resp, _ = do(t, "GET", o.URL("a.bin"), map[string]string{"If-None-Match": `"` + want[:16] + `"`})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %s", resp.Status)
	}
	resp, _ = do(t, "GET", o.URL("a.bin"), map[string]string{"If-Modified-Since": OriginModTime.Format(http.TimeFormat)})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-Modified-Since: %s", resp.Status)
	}
	resp, part = do(t, "GET", o.URL("a.bin"), map[string]string{"Range": "bytes=0-9", "If-Range": `"stale"`})
	if resp.StatusCode != 200 || len(part) != size {
		t.Errorf("stale If-Range: %s, %d bytes", resp.Status, len(part))
	}
	if got := o.BytesServed("a.bin"); got != 110+size {
		t.Errorf("BytesServed = %d, want %d", got, 110+size)
	}

	// Unknown names and methods.
	if resp, _ := do(t, "GET", o.URL("nope"), nil); resp.StatusCode != 404 {
		t.Errorf("unknown name: %s", resp.Status)
	}
	if o.Requests("nope") != 1 || o.BytesServed("nope") != 0 {
		t.Errorf("unknown name counters: %d %d", o.Requests("nope"), o.BytesServed("nope"))
	}
	if resp, _ := do(t, "POST", o.URL("a.bin"), nil); resp.StatusCode != 405 {
		t.Errorf("POST: %s", resp.Status)
	}
}

func TestOriginNestedNameAndAddFile(t *testing.T) {
	o := NewOrigin(t)
	path := filepath.Join(t.TempDir(), "f")
	content := []byte("hello, origin\n")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	name := "dir/sub dir/f.txt"
	if got := o.AddFile(name, path); got != sum(content) {
		t.Fatalf("AddFile sha = %s", got)
	}
	resp, body := do(t, "GET", o.URL(name), nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, content) {
		t.Fatalf("GET %s: %s %q", o.URL(name), resp.Status, body)
	}
	if o.BytesServed(name) != int64(len(content)) {
		t.Errorf("BytesServed = %d", o.BytesServed(name))
	}
}

func TestOriginFaults(t *testing.T) {
	o := NewOrigin(t)
	want := o.AddRandom("f", 64<<10, 7)

	// FailNext: the next n requests fail, then normal.
	o.FailNext("f", 2, http.StatusServiceUnavailable)
	for i, code := range []int{503, 503, 200, 200} {
		resp, body := do(t, "GET", o.URL("f"), nil)
		if resp.StatusCode != code {
			t.Fatalf("request %d: %s, want %d", i, resp.Status, code)
		}
		if code == 200 && sum(body) != want {
			t.Fatalf("request %d: wrong body", i)
		}
	}
	if got := o.Requests("f"); got != 4 {
		t.Errorf("Requests = %d, want 4", got)
	}
	if got := o.BytesServed("f"); got != 2*64<<10 {
		t.Errorf("BytesServed = %d: error bodies counted?", got)
	}

	// SetStatus: every request, until reset.
	o.SetStatus("f", http.StatusForbidden)
	for range 3 {
		if resp, _ := do(t, "GET", o.URL("f"), nil); resp.StatusCode != 403 {
			t.Fatalf("SetStatus: %s", resp.Status)
		}
	}
	if resp, _ := do(t, "HEAD", o.URL("f"), nil); resp.StatusCode != 403 {
		t.Fatalf("SetStatus HEAD: %s", resp.Status)
	}
	o.SetStatus("f", 0)
	if resp, _ := do(t, "GET", o.URL("f"), nil); resp.StatusCode != 200 {
		t.Fatalf("after SetStatus(0): %s", resp.Status)
	}

	// SetNoRanges: Range ignored, full 200 body, no Accept-Ranges.
	o.SetNoRanges("f", true)
	o.ResetCounters()
	resp, body := do(t, "GET", o.URL("f"), map[string]string{"Range": "bytes=0-99"})
	if resp.StatusCode != 200 || sum(body) != want {
		t.Fatalf("no-ranges: %s, %d bytes", resp.Status, len(body))
	}
	if ar := resp.Header.Get("Accept-Ranges"); ar != "" {
		t.Errorf("no-ranges: Accept-Ranges = %q", ar)
	}
	if resp.ContentLength != 64<<10 {
		t.Errorf("no-ranges: Content-Length %d", resp.ContentLength)
	}
	if o.BytesServed("f") != 64<<10 {
		t.Errorf("no-ranges: BytesServed = %d", o.BytesServed("f"))
	}
	if resp, _ := do(t, "GET", o.URL("f"), map[string]string{"If-None-Match": `"` + want[:16] + `"`}); resp.StatusCode != 200 {
		t.Errorf("no-ranges conditional: %s", resp.Status)
	}
	if resp, b := do(t, "HEAD", o.URL("f"), nil); resp.StatusCode != 200 || len(b) != 0 || resp.Header.Get("Accept-Ranges") != "" {
		t.Errorf("no-ranges HEAD: %s", resp.Status)
	}
	o.SetNoRanges("f", false)
	if resp, b := do(t, "GET", o.URL("f"), map[string]string{"Range": "bytes=0-99"}); resp.StatusCode != 206 || len(b) != 100 {
		t.Errorf("ranges back: %s, %d bytes", resp.Status, len(b))
	}

	// SetNoHEAD.
	o.SetNoHEAD("f", true)
	if resp, _ := do(t, "HEAD", o.URL("f"), nil); resp.StatusCode != 405 {
		t.Errorf("no-HEAD: HEAD %s", resp.Status)
	}
	if resp, _ := do(t, "GET", o.URL("f"), nil); resp.StatusCode != 200 {
		t.Errorf("no-HEAD: GET %s", resp.Status)
	}
	o.SetNoHEAD("f", false)
	if resp, _ := do(t, "HEAD", o.URL("f"), nil); resp.StatusCode != 200 {
		t.Errorf("HEAD back: %s", resp.Status)
	}

	// Faults are per name, and may be set before the file exists.
	o.SetStatus("later", 500)
	o.AddRandom("later", 10, 1)
	o.AddRandom("other", 10, 1)
	if resp, _ := do(t, "GET", o.URL("later"), nil); resp.StatusCode != 500 {
		t.Errorf("preset fault: %s", resp.Status)
	}
	if resp, _ := do(t, "GET", o.URL("other"), nil); resp.StatusCode != 200 {
		t.Errorf("other name: %s", resp.Status)
	}
}

func TestOriginConcurrent(t *testing.T) {
	o := NewOrigin(t)
	want := o.AddRandom("f", 256<<10, 3)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if i%2 == 0 {
				o.FailNext("f", 0, 500)
				o.SetNoRanges("f", i%4 == 0)
			}
			resp, err := http.Get(o.URL("f"))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || sum(b) != want {
				t.Errorf("concurrent GET: %s", resp.Status)
			}
		})
	}
	wg.Wait()
	if o.TotalBytesServed() != 8*256<<10 || o.Requests("f") != 8 {
		t.Errorf("counters: %d bytes, %d requests", o.TotalBytesServed(), o.Requests("f"))
	}
}

func TestOriginUploadCap(t *testing.T) {
	o := NewOrigin(t, WithUploadCap(4<<20))
	want := o.AddRandom("f", 2<<20, 1)
	start := time.Now()
	_, body := do(t, "GET", o.URL("f"), nil)
	elapsed := time.Since(start)
	if sum(body) != want {
		t.Fatal("wrong body")
	}
	if elapsed < 300*time.Millisecond {
		t.Errorf("2 MiB at 4 MiB/s took %v, want >= 300ms", elapsed)
	}
	t.Logf("2 MiB at 4 MiB/s: %v", elapsed)

	// Lifting the cap while running.
	o.SetUploadCap(0)
	start = time.Now()
	do(t, "GET", o.URL("f"), nil)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("uncapped took %v", d)
	}
}

func TestOriginClose(t *testing.T) {
	o := NewOrigin(t)
	o.AddRandom("f", 10, 1)
	if resp, _ := do(t, "GET", o.URL("f"), nil); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	http.DefaultClient.CloseIdleConnections()
	o.Close()
	o.Close() // idempotent
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(o.URL("f")); err == nil {
		resp.Body.Close()
		t.Fatal("request after Close succeeded")
	}
}

func TestOriginCloseInterruptsCappedTransfer(t *testing.T) {
	o := NewOrigin(t, WithUploadCap(64<<10))
	o.AddRandom("f", 10<<20, 1)
	resp, err := http.Get(o.URL("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	o.Close()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, io.EOF) {
			t.Errorf("transfer completed after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt the transfer")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
}
