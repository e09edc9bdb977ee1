package origin

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	c := New()
	for n, want := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 5: 3200 * time.Millisecond, 6: 5 * time.Second, 20: 5 * time.Second} {
		for range 20 {
			if d := c.backoff(n); d > want || d < want*3/4 {
				t.Errorf("backoff(%d) = %v, want within [%v, %v]", n, d, want*3/4, want)
			}
		}
	}
}

// TestNoSecretsInLogsOrErrors runs failing requests with debug logging and
// checks that neither the query's signature nor header values leak.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	content := randomBytes(testLength, 13)
	var logs bytes.Buffer
	var mu sync.Mutex
	c := testClient(t, lockedWriter{&mu, &logs}, WithRetries(1))
	header := http.Header{"Authorization": {"Bearer HEADERSECRET"}}
	ctx := context.Background()
	var errs []error

	o := newOrigin(t, content, func(o *testOrigin) { o.fail500 = 3 })
	_, err := c.Probe(ctx, o.url(), header)
	errs = append(errs, err)
	o.set(func(o *testOrigin) { o.fail500, o.cutOnce = 1, true })
	info := Info{Length: testLength, AcceptRanges: true, ETag: etagOf(content)}
	errs = append(errs, c.Fill(ctx, o.url(), header, info, newSink(testLength, testPieceSize), FillOptions{}))
	o.set(func(o *testOrigin) { o.notFound = true })
	_, err = c.Validate(ctx, o.url(), header, `"x"`, "")
	errs = append(errs, err)

	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL + "/f?sig=s3cr3tSIG"
	dead.Close()
	_, err = c.Probe(ctx, deadURL, header)
	errs = append(errs, err)
	_, err = c.Probe(ctx, "ftp://user:pw@host/f?sig=s3cr3tSIG", header)
	errs = append(errs, err)

	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "retrying") || !strings.Contains(out, "sig=REDACTED") {
		t.Errorf("logs do not describe the retries:\n%s", out)
	}
	for _, s := range []string{"s3cr3tSIG", "HEADERSECRET"} {
		if strings.Contains(out, s) {
			t.Errorf("logs contain %q:\n%s", s, out)
		}
		for _, e := range errs {
			if e != nil && strings.Contains(e.Error(), s) {
				t.Errorf("error contains %q: %v", s, e)
			}
		}
	}
	if errs[0] == nil || errs[2] == nil || errs[3] == nil || errs[4] == nil {
		t.Errorf("expected failures, got %v", errs)
	}
	if errs[1] != nil {
		t.Errorf("Fill after one 500 and a cut: %v", errs[1])
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
