package peermetrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/damselfly-p2p/damselfly/p2p/localapi"
)

// LocalAPI wraps the local API handler h so that each download it runs
// (POST /api/v1/download) counts as active while it runs, and its result
// line — where its bytes came from — is recorded when it ends. The answer
// passes through unchanged.
func (m *Peer) LocalAPI(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/download" {
			h.ServeHTTP(w, r)
			return
		}
		done := m.Started()
		tw := &resultTap{ResponseWriter: w}
		defer func() {
			switch {
			case tw.event.Result != nil:
				done(tw.event.Result, nil)
			case tw.event.Error != "":
				done(nil, errors.New(tw.event.Error))
			default:
				done(nil, errors.New("download ended without a result"))
			}
		}()
		h.ServeHTTP(tw, r)
	})
}

// resultTap passes an NDJSON answer through, keeping its last result or
// error event.
type resultTap struct {
	http.ResponseWriter
	partial []byte
	event   localapi.Event
}

func (t *resultTap) Write(p []byte) (int, error) {
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		line := t.partial[:i]
		// Progress lines are many and small; only a final line is decoded.
		if bytes.Contains(line, []byte(`"result"`)) || bytes.Contains(line, []byte(`"error"`)) {
			var e localapi.Event
			if json.Unmarshal(line, &e) == nil && (e.Result != nil || e.Error != "") {
				t.event = e
			}
		}
		t.partial = t.partial[i+1:]
	}
	return t.ResponseWriter.Write(p)
}

// Flush keeps the answer streaming.
func (t *resultTap) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (t *resultTap) Unwrap() http.ResponseWriter { return t.ResponseWriter }
