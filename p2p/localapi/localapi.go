// Package localapi owns dfdaemon's local API on a unix socket: the server
// that runs downloads on the host's peer for dfget (and later dfmount and
// df-snapshotter), and the client they use. Requests stream progress as
// NDJSON and end with a result or an error line.
//
//	GET  /healthz
//	POST /api/v1/download   DownloadRequest -> NDJSON Event lines
//	GET  /api/v1/tasks      cached tasks (JSON)
//	/api/v1/lazy/...        lazy reads for dfmount (see lazy.go)
package localapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/p2p"
)

// DownloadRequest mirrors p2p.Request over the wire. Output must be an
// absolute path; the daemon writes it atomically.
type DownloadRequest struct {
	URL      string              `json:"url"`
	Header   map[string][]string `json:"header,omitempty"`
	Tag      string              `json:"tag,omitempty"`
	Filters  []string            `json:"filters,omitempty"`
	Digest   string              `json:"digest,omitempty"`
	MD5      string              `json:"md5,omitempty"`
	Output   string              `json:"output"`
	Limit    int64               `json:"limit,omitempty"`
	NoSource bool                `json:"noSource,omitempty"`
}

// Event is one NDJSON line of a download's answer.
type Event struct {
	Done   int64       `json:"done,omitempty"`
	Total  int64       `json:"total,omitempty"`
	Result *p2p.Result `json:"result,omitempty"`
	Error  string      `json:"error,omitempty"`
}

// Server serves the local API over a peer.
type Server struct {
	Peer *p2p.Peer
	Log  logrus.FieldLogger

	lazy lazyTable
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /api/v1/download", s.download)
	mux.HandleFunc("GET /api/v1/tasks", s.tasks)
	s.lazyRoutes(mux)
	return mux
}

// Listen creates the unix socket at path (replacing a stale one, refusing
// one a live daemon answers on), mode 0660.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another dfdaemon is already listening on %s", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("set the mode of socket %s: %w", path, err)
	}
	return ln, nil
}

func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	var req DownloadRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "invalid JSON body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if req.Output == "" || !filepath.IsAbs(req.Output) {
		http.Error(w, "output must be an absolute path", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(e)
		if flusher != nil {
			flusher.Flush()
		}
	}
	last := time.Time{}
	pr := p2p.Request{URL: req.URL, Header: http.Header(req.Header), Tag: req.Tag, Filters: req.Filters,
		Digest: req.Digest, MD5: req.MD5, Output: req.Output, Limit: req.Limit, NoSource: req.NoSource,
		Progress: func(done, total int64) {
			if time.Since(last) < 100*time.Millisecond && done < total {
				return
			}
			last = time.Now()
			send(Event{Done: done, Total: total})
		}}
	res, err := s.Peer.Download(r.Context(), pr)
	if err != nil {
		s.Log.WithError(err).WithField("url", manifest.RedactURL(req.URL)).Warn("download failed")
		send(Event{Error: err.Error()})
		return
	}
	send(Event{Result: res})
}

func (s *Server) tasks(w http.ResponseWriter, r *http.Request) {
	list, err := s.Peer.Store().List()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(list)
}

// Client talks to a dfdaemon over its socket.
type Client struct {
	sock string
	http *http.Client
}

// NewClient returns a client for the daemon at sock.
func NewClient(sock string) *Client {
	return &Client{sock: sock, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}}
}

// Alive reports whether a daemon answers on the socket.
func (c *Client) Alive(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://dfdaemon/healthz", nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Download asks the daemon to download; progress is called for progress
// events.
func (c *Client) Download(ctx context.Context, dr DownloadRequest, progress func(done, total int64)) (*p2p.Result, error) {
	body, _ := json.Marshal(dr)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://dfdaemon/api/v1/download", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("dfdaemon at %s: %w", c.sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("dfdaemon refused the download: %s", bytes.TrimSpace(msg))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("dfdaemon sent a bad event: %w", err)
		}
		switch {
		case e.Error != "":
			return nil, errors.New(e.Error)
		case e.Result != nil:
			return e.Result, nil
		case progress != nil:
			progress(e.Done, e.Total)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dfdaemon connection: %w", err)
	}
	return nil, errors.New("dfdaemon closed the connection before the download finished")
}
