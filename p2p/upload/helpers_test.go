package upload_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/p2p/upload"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// quietLogger discards log output.
func quietLogger() logrus.FieldLogger { return testenv.QuietLogger() }

// taskMap is an upload.Tasks over tasks opened in a cache store. It counts
// lookups and releases so that tests can check that every lookup is
// released.
type taskMap struct {
	mu       sync.Mutex
	m        map[string]*cache.Task
	lookups  int
	releases int
}

func (k *taskMap) Lookup(id string) (*cache.Task, func(), bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.m[id]
	if !ok {
		return nil, nil, false
	}
	k.lookups++
	return t, func() {
		k.mu.Lock()
		k.releases++
		k.mu.Unlock()
	}, true
}

func (k *taskMap) balance() (lookups, releases int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lookups, k.releases
}

// fetchingTasks adds upload.PieceFetcher to a taskMap: an absent piece is
// written from content (or fails with err) when a peer asks for it.
type fetchingTasks struct {
	*taskMap
	content []byte
	err     error
	calls   int
	mu      sync.Mutex
}

func (f *fetchingTasks) fetches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fetchingTasks) FetchPiece(ctx context.Context, id string, n int) error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	t, release, ok := f.Lookup(id)
	if !ok {
		return errors.New("unknown task")
	}
	defer release()
	return t.WritePiece(n, pieceOf(t, f.content, n), cache.SumOf(pieceOf(t, f.content, n)))
}

// fixture is a store with one task and the content it will hold.
type fixture struct {
	store   *cache.Store
	tasks   *taskMap
	task    *cache.Task
	id      string
	content []byte
}

const (
	testPieceSize = 64 << 10
	// testLength is 5 pieces, the last one short.
	testLength = 4*testPieceSize + 1000
	testTaskID = "task-0123456789abcdef"
)

// newFixture creates testTaskID with testLength bytes in 64 KiB pieces and
// writes the pieces listed in have.
func newFixture(t *testing.T, have ...int) *fixture {
	t.Helper()
	return newFixtureSized(t, testLength, testPieceSize, have...)
}

func newFixtureSized(t *testing.T, length, pieceSize int64, have ...int) *fixture {
	t.Helper()
	store, err := cache.Open(t.TempDir(), cache.WithLogger(quietLogger()))
	if err != nil {
		t.Fatalf("cache.Open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	task, err := store.Create(ctx, cache.Meta{TaskID: testTaskID, URL: "http://origin.test/f", Length: length, PieceSize: pieceSize})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { task.Close() })
	content, err := io.ReadAll(testenv.RandomReader(length, 7))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, tasks: &taskMap{m: map[string]*cache.Task{testTaskID: task}}, task: task, id: testTaskID, content: content}
	for _, i := range have {
		f.write(t, i)
	}
	return f
}

// write stores piece i of the fixture's content.
func (f *fixture) write(t *testing.T, i int) {
	t.Helper()
	p := pieceOf(f.task, f.content, i)
	if err := f.task.WritePiece(i, p, cache.SumOf(p)); err != nil {
		t.Fatalf("WritePiece(%d): %v", i, err)
	}
}

func (f *fixture) piece(i int) []byte { return pieceOf(f.task, f.content, i) }

func pieceOf(t *cache.Task, content []byte, i int) []byte {
	off, n := t.Layout().PieceRange(i)
	return content[off : off+n]
}

// serve starts an HTTP server for an upload server over tasks.
func serve(t *testing.T, tasks upload.Tasks, opts ...upload.Option) (*upload.Server, *httptest.Server) {
	t.Helper()
	s := upload.New(tasks, append([]upload.Option{upload.WithLogger(quietLogger())}, opts...)...)
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

// response is what a test looks at in an answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request and reads the whole answer.
func do(t *testing.T, method, url string, header http.Header) response {
	t.Helper()
	r, err := tryDo(method, url, header)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryDo is do for goroutines other than the test's.
func tryDo(method, url string, header http.Header) (response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return response{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

func get(t *testing.T, url string) response { return do(t, http.MethodGet, url, nil) }
