package trust

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		want    string
		ok      bool
	}{
		{"bearer", []string{"Bearer abc"}, "abc", true},
		{"scheme case-insensitive", []string{"bearer abc"}, "abc", true},
		{"extra spaces", []string{"Bearer   abc  "}, "abc", true},
		{"none", nil, "", false},
		{"basic", []string{"Basic YTpi"}, "", false},
		{"empty token", []string{"Bearer "}, "", false},
		{"scheme only", []string{"Bearer"}, "", false},
		{"two headers", []string{"Bearer abc", "Bearer def"}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for _, h := range tc.headers {
				r.Header.Add("Authorization", h)
			}
			got, ok := BearerToken(r)
			if got != tc.want || ok != tc.ok {
				t.Errorf("BearerToken = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// serve runs h behind mw on one request with the given Authorization value
// ("" for none) and returns the recorder plus what the handler saw.
func serve(t *testing.T, mw func(http.Handler) http.Handler, target, auth string) (*httptest.ResponseRecorder, *Claims) {
	t.Helper()
	var seen *Claims
	reached := false
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = true
		if c, ok := ClaimsFromContext(r.Context()); ok {
			seen = &c
		}
		io.WriteString(w, "ok")
	}))
	r := httptest.NewRequest("GET", target, nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if reached != (rec.Code == http.StatusOK) {
		t.Fatalf("handler reached = %v but status %d", reached, rec.Code)
	}
	return rec, seen
}

func TestMiddlewares(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	iss := newIssuer(t, testToken, clock)
	other := newIssuer(t, "another-cluster-token-0123", clock)
	admin := mustSecret(t, "admin-token-0123456789")
	peerTok, _ := iss.IssuePeer("peer-a")
	taskTok, _ := iss.IssueTask("peer-b", "task-1")
	foreignTask, _ := other.IssueTask("peer-b", "task-1")

	taskFromPath := func(r *http.Request) string {
		rest, ok := strings.CutPrefix(r.URL.Path, "/peer/tasks/")
		if !ok {
			return ""
		}
		id, _, _ := strings.Cut(rest, "/")
		return id
	}
	custom := Require(func(r *http.Request, token string) error {
		if token == "let-me-in" && r.Method == "GET" {
			return nil
		}
		return errors.New("secret reason")
	})
	tests := []struct {
		name       string
		mw         func(http.Handler) http.Handler
		target     string
		auth       string
		wantOK     bool
		wantClaims *Claims
	}{
		{"custom ok", custom, "/", "Bearer let-me-in", true, nil},
		{"custom refused", custom, "/", "Bearer nope", false, nil},
		{"custom no header", custom, "/", "", false, nil},
		{"admin ok", RequireSecret(admin), "/api/v1/preheats", "Bearer admin-token-0123456789", true, nil},
		{"admin wrong", RequireSecret(admin), "/api/v1/preheats", "Bearer admin-token-012345678", false, nil},
		{"admin basic scheme", RequireSecret(admin), "/api/v1/preheats", "Basic admin-token-0123456789", false, nil},
		{"admin unset admits nothing", RequireSecret(Secret{}), "/", "Bearer x", false, nil},
		{"peer ok", RequirePeer(iss), "/api/v1/tasks/sync", "Bearer " + peerTok, true,
			&Claims{Kind: KindPeer, PeerID: "peer-a"}},
		{"peer with task cred", RequirePeer(iss), "/api/v1/tasks/sync", "Bearer " + taskTok, false, nil},
		{"peer with admin token", RequirePeer(iss), "/api/v1/tasks/sync", "Bearer admin-token-0123456789", false, nil},
		{"task ok", RequireTask(iss, taskFromPath), "/peer/tasks/task-1/pieces/3", "Bearer " + taskTok, true,
			&Claims{Kind: KindTask, PeerID: "peer-b", TaskID: "task-1"}},
		{"task other task", RequireTask(iss, taskFromPath), "/peer/tasks/task-2/pieces/3", "Bearer " + taskTok, false, nil},
		{"task with peer cred", RequireTask(iss, taskFromPath), "/peer/tasks/task-1/bitmap", "Bearer " + peerTok, false, nil},
		{"task other cluster", RequireTask(iss, taskFromPath), "/peer/tasks/task-1/bitmap", "Bearer " + foreignTask, false, nil},
		{"task no task in path", RequireTask(iss, taskFromPath), "/other", "Bearer " + taskTok, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, seen := serve(t, tc.mw, tc.target, tc.auth)
			if tc.wantOK {
				if rec.Code != http.StatusOK {
					t.Fatalf("status %d, want 200; body %s", rec.Code, rec.Body)
				}
				if (seen == nil) != (tc.wantClaims == nil) {
					t.Fatalf("claims in context = %+v, want %+v", seen, tc.wantClaims)
				}
				if seen != nil && (seen.Kind != tc.wantClaims.Kind || seen.PeerID != tc.wantClaims.PeerID || seen.TaskID != tc.wantClaims.TaskID) {
					t.Errorf("claims in context = %+v, want %+v", *seen, *tc.wantClaims)
				}
				return
			}
			checkUnauthorized(t, rec)
			if tok := strings.TrimPrefix(tc.auth, "Bearer "); tok != "" && strings.Contains(rec.Body.String(), tok) {
				t.Errorf("401 body echoes the token: %s", rec.Body)
			}
		})
	}
}

func checkUnauthorized(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", rec.Code)
	}
	if got := rec.Header().Get("WWW-Authenticate"); got != "Bearer" {
		t.Errorf("WWW-Authenticate = %q, want Bearer", got)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	want := map[string]string{"code": "unauthorized", "message": unauthorizedMessage}
	if len(body) != 2 || body["code"] != want["code"] || body["message"] != want["message"] {
		t.Errorf("body = %v, want %v", body, want)
	}
}

// authLog records the Authorization header of every request to a server.
type authLog struct {
	mu   sync.Mutex
	seen map[string]string // path -> Authorization
}

func (l *authLog) handler(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.seen[r.URL.Path] = r.Header.Get("Authorization")
		l.mu.Unlock()
		next(w, r)
	}
}

func (l *authLog) get(path string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.seen[path]
	return v, ok
}

func TestBearerTransport(t *testing.T) {
	secret := mustSecret(t, testToken)
	log := &authLog{seen: map[string]string{}}
	elsewhere := httptest.NewServer(log.handler(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "elsewhere") }))
	t.Cleanup(elsewhere.Close)
	home := httptest.NewServer(log.handler(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, elsewhere.URL+"/stolen", http.StatusFound)
		case "/local":
			http.Redirect(w, r, "/landed", http.StatusFound)
		default:
			io.WriteString(w, "home")
		}
	}))
	t.Cleanup(home.Close)
	client := &http.Client{Transport: WithBearer(nil, secret)}
	t.Cleanup(client.CloseIdleConnections)

	get := func(path string, auth string) {
		t.Helper()
		req, err := http.NewRequest("GET", home.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if req.Header.Get("Authorization") != auth {
			t.Errorf("transport modified the caller's request")
		}
	}
	get("/plain", "")
	get("/away", "")
	get("/local", "")
	get("/own", "Bearer caller-chose-this")

	want := "Bearer " + testToken
	tests := []struct{ path, want string }{
		{"/plain", want},
		{"/away", want},
		{"/stolen", ""}, // redirect to another host: no credential
		{"/local", want},
		{"/landed", want}, // redirect on the same host keeps it
		{"/own", "Bearer caller-chose-this"},
	}
	for _, tc := range tests {
		got, ok := log.get(tc.path)
		if !ok {
			t.Errorf("%s: not requested", tc.path)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: Authorization = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestBearerTransportTokenError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("request sent although the token could not be had")
	}))
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: WithBearer(nil, Secret{})}
	_, err := client.Post(srv.URL, "text/plain", strings.NewReader("body"))
	if !errors.Is(err, ErrNoSecret) {
		t.Fatalf("err = %v, want ErrNoSecret", err)
	}
}

func TestBearerTransportRefreshes(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	tokens := []string{"first", "second"}
	n := 0
	client := &http.Client{Transport: WithBearerFunc(nil, func() (string, error) {
		tok := tokens[n]
		n++
		return tok, nil
	})}
	t.Cleanup(client.CloseIdleConnections)
	for range tokens {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != "Bearer first" || got[1] != "Bearer second" {
		t.Errorf("Authorization headers = %q", got)
	}
}
