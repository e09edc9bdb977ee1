package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/p2p"
)

// Lazy reads through the daemon: dfmount opens a task for lazy reads,
// asks the daemon to make byte ranges present (top priority), and reads
// them from the daemon's data file itself, so data never crosses the
// socket.
//
//	POST /api/v1/lazy/open      LazyOpenRequest -> LazyInfo
//	POST /api/v1/lazy/ensure    EnsureRequest   -> 204; 504 on timeout
//	GET  /api/v1/lazy/progress?task=ID          -> LazyInfo
//	POST /api/v1/lazy/close     {"taskID": ...} -> 204

// LazyOpenRequest opens a URL for lazy reads.
type LazyOpenRequest struct {
	URL           string              `json:"url"`
	Header        map[string][]string `json:"header,omitempty"`
	Tag           string              `json:"tag,omitempty"`
	Filters       []string            `json:"filters,omitempty"`
	Prefetch      bool                `json:"prefetch"`
	PrefetchLimit int64               `json:"prefetchLimit,omitempty"`
	// ReadAheadAfter is p2p.LazyOptions.ReadAheadAfter (0: the default).
	ReadAheadAfter int `json:"readAheadAfter,omitempty"`
}

// LazyInfo describes a lazily opened task.
type LazyInfo struct {
	TaskID   string `json:"taskID"`
	Length   int64  `json:"length"`
	Present  int64  `json:"present"`
	Complete bool   `json:"complete"`
	DataPath string `json:"dataPath"`
	// Mode is how the daemon fetches the content: "p2p" or "direct"
	// (straight from the origin, no supernode reachable); see p2p.Lazy.
	Mode string `json:"mode,omitempty"`
}

// EnsureRequest asks for a byte range to be present.
type EnsureRequest struct {
	TaskID    string `json:"taskID"`
	Offset    int64  `json:"offset"`
	Length    int64  `json:"length"`
	TimeoutMS int64  `json:"timeoutMs"`
}

type lazyEntry struct {
	l    *p2p.Lazy
	refs int
}

type lazyTable struct {
	mu sync.Mutex
	m  map[string]*lazyEntry
}

func (s *Server) lazyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/lazy/open", s.lazyOpen)
	mux.HandleFunc("POST /api/v1/lazy/ensure", s.lazyEnsure)
	mux.HandleFunc("GET /api/v1/lazy/progress", s.lazyProgress)
	mux.HandleFunc("POST /api/v1/lazy/close", s.lazyClose)
}

func info(l *p2p.Lazy) LazyInfo {
	return LazyInfo{TaskID: l.TaskID(), Length: l.Size(), Present: l.Present(), Complete: l.Complete(), DataPath: l.DataPath(),
		Mode: l.Mode()}
}

func (s *Server) lazyOpen(w http.ResponseWriter, r *http.Request) {
	var req LazyOpenRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "invalid JSON body: "+err.Error(), http.StatusBadRequest)
		return
	}
	// Open without the table lock: registration may take a while.
	l, err := s.Peer.OpenLazy(r.Context(), p2p.Request{URL: req.URL, Header: http.Header(req.Header), Tag: req.Tag,
		Filters: req.Filters}, p2p.LazyOptions{Prefetch: req.Prefetch, PrefetchLimit: req.PrefetchLimit,
		ReadAheadAfter: req.ReadAheadAfter})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	s.lazy.mu.Lock()
	defer s.lazy.mu.Unlock()
	if s.lazy.m == nil {
		s.lazy.m = map[string]*lazyEntry{}
	}
	if e := s.lazy.m[l.TaskID()]; e != nil {
		l.Close() // one is open already: share it
		e.refs++
		writeJSON(w, info(e.l))
		return
	}
	s.lazy.m[l.TaskID()] = &lazyEntry{l: l, refs: 1}
	writeJSON(w, info(l))
}

func (s *Server) lookupLazy(id string) *p2p.Lazy {
	s.lazy.mu.Lock()
	defer s.lazy.mu.Unlock()
	if e := s.lazy.m[id]; e != nil {
		return e.l
	}
	return nil
}

func (s *Server) lazyEnsure(w http.ResponseWriter, r *http.Request) {
	var req EnsureRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "invalid JSON body: "+err.Error(), http.StatusBadRequest)
		return
	}
	l := s.lookupLazy(req.TaskID)
	if l == nil {
		http.Error(w, "task not open", http.StatusNotFound)
		return
	}
	ctx := r.Context()
	if req.TimeoutMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMS)*time.Millisecond)
		defer cancel()
	}
	if err := l.Ensure(ctx, req.Offset, req.Length); err != nil {
		code := http.StatusBadGateway
		if errors.Is(err, context.DeadlineExceeded) {
			code = http.StatusGatewayTimeout
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) lazyProgress(w http.ResponseWriter, r *http.Request) {
	l := s.lookupLazy(r.URL.Query().Get("task"))
	if l == nil {
		http.Error(w, "task not open", http.StatusNotFound)
		return
	}
	writeJSON(w, info(l))
}

func (s *Server) lazyClose(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TaskID string `json:"taskID"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "invalid JSON body", http.StatusBadRequest)
		return
	}
	s.lazy.mu.Lock()
	e := s.lazy.m[req.TaskID]
	if e != nil {
		if e.refs--; e.refs <= 0 {
			delete(s.lazy.m, req.TaskID)
			defer e.l.Close()
		}
	}
	s.lazy.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// RemoteLazy is a task opened for lazy reads through a dfdaemon. It
// satisfies fusefs.Content.
type RemoteLazy struct {
	c    *Client
	info LazyInfo
	f    *os.File

	mu       sync.Mutex
	progress LazyInfo
	checked  time.Time
}

// OpenLazy opens url for lazy reads through the daemon.
func (c *Client) OpenLazy(ctx context.Context, req LazyOpenRequest) (*RemoteLazy, error) {
	var li LazyInfo
	if err := c.post(ctx, "/api/v1/lazy/open", req, &li); err != nil {
		return nil, err
	}
	f, err := os.Open(li.DataPath)
	if err != nil {
		return nil, fmt.Errorf("open the daemon's data file: %w", err)
	}
	return &RemoteLazy{c: c, info: li, f: f, progress: li}, nil
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	body, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://dfdaemon"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("dfdaemon at %s: %w", c.sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		err := fmt.Errorf("dfdaemon: %s", bytes.TrimSpace(msg))
		if resp.StatusCode == http.StatusGatewayTimeout {
			err = fmt.Errorf("%w: %w", err, context.DeadlineExceeded)
		}
		return err
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// Size is the content length.
func (r *RemoteLazy) Size() int64 { return r.info.Length }

// DataPath is the daemon's data file.
func (r *RemoteLazy) DataPath() string { return r.info.DataPath }

// ReadAtContext makes the range present through the daemon, then reads it
// from the data file.
func (r *RemoteLazy) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= r.info.Length {
		return 0, io.EOF
	}
	n := int64(len(p))
	if off+n > r.info.Length {
		n = r.info.Length - off
	}
	if !r.Complete() {
		req := EnsureRequest{TaskID: r.info.TaskID, Offset: off, Length: n}
		if dl, ok := ctx.Deadline(); ok {
			req.TimeoutMS = max(1, time.Until(dl).Milliseconds())
		}
		if err := r.c.post(ctx, "/api/v1/lazy/ensure", req, nil); err != nil {
			return 0, err
		}
	}
	m, err := r.f.ReadAt(p[:n], off)
	if err == nil && m < len(p) {
		err = io.EOF
	}
	return m, err
}

func (r *RemoteLazy) refresh() LazyInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.progress.Complete || time.Since(r.checked) < 500*time.Millisecond {
		return r.progress
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://dfdaemon/api/v1/lazy/progress?task="+r.info.TaskID, nil)
	if resp, err := r.c.http.Do(req); err == nil {
		var li LazyInfo
		if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&li) == nil {
			r.progress = li
		}
		resp.Body.Close()
	}
	r.checked = time.Now()
	return r.progress
}

// Present is how many bytes the daemon holds.
func (r *RemoteLazy) Present() int64 { return r.refresh().Present }

// Mode is how the daemon fetches the content ("p2p" or "direct"), as of
// its last answer (at most half a second old while incomplete).
func (r *RemoteLazy) Mode() string { return r.refresh().Mode }

// Complete reports whether the daemon holds every byte.
func (r *RemoteLazy) Complete() bool { return r.refresh().Complete }

// Close tells the daemon this reader is done.
func (r *RemoteLazy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r.f.Close()
	return r.c.post(ctx, "/api/v1/lazy/close", map[string]string{"taskID": r.info.TaskID}, nil)
}
