package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/damselfly-p2p/damselfly/wire"
)

func TestPreheatRequest(t *testing.T) {
	tests := []struct {
		name     string
		arg      string
		opts     preheatOptions
		wantURL  string
		wantType string
		wantPlat string
		wantErr  string
	}{
		{name: "image ref on loopback", arg: "127.0.0.1:5000/test/app:v1", opts: preheatOptions{platform: "linux/amd64"},
			wantURL: "http://127.0.0.1:5000/v2/test/app/manifests/v1", wantType: "image", wantPlat: "linux/amd64"},
		{name: "docker hub short name", arg: "busybox", opts: preheatOptions{platform: "linux/arm64"},
			wantURL: "https://registry-1.docker.io/v2/library/busybox/manifests/latest", wantType: "image", wantPlat: "linux/arm64"},
		{name: "plain http", arg: "reg.example/a:1", opts: preheatOptions{plainHTTP: true, platform: "linux/amd64"},
			wantURL: "http://reg.example/v2/a/manifests/1", wantType: "image", wantPlat: "linux/amd64"},
		{name: "file URL", arg: "https://files.example/big.iso", opts: preheatOptions{platform: "linux/amd64"},
			wantURL: "https://files.example/big.iso", wantType: ""},
		{name: "manifest URL", arg: "https://r.example/v2/a/manifests/t", opts: preheatOptions{platform: "linux/amd64"},
			wantURL: "https://r.example/v2/a/manifests/t", wantType: "", wantPlat: "linux/amd64"},
		{name: "file type for a reference", arg: "busybox", opts: preheatOptions{typ: "file"}, wantErr: "needs a URL"},
		{name: "bad type", arg: "busybox", opts: preheatOptions{typ: "dir"}, wantErr: "--type"},
		{name: "bad platform", arg: "busybox", opts: preheatOptions{platform: "linux"}, wantErr: "--platform"},
		{name: "bad header", arg: "https://f.example/x", opts: preheatOptions{headers: []string{"secretvalue"}}, wantErr: "--header"},
		{name: "bad reference", arg: "Not/Valid", wantErr: "bad repository name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := tc.opts.request(tc.arg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secretvalue") {
					t.Error("error echoes a header value")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.URL != tc.wantURL || req.Type != tc.wantType || req.Platform != tc.wantPlat {
				t.Errorf("got %+v", req)
			}
		})
	}
	o := preheatOptions{headers: []string{"Authorization: Basic abc", "X-A:b"}}
	req, err := o.request("https://f.example/x")
	if err != nil || req.Headers.Get("Authorization") != "Basic abc" || req.Headers.Get("X-A") != "b" {
		t.Errorf("headers %v, %v", req.Headers, err)
	}
}

// TestPreheatWaitExitCodes runs the command against a fake supernode.
func TestPreheatWaitExitCodes(t *testing.T) {
	for _, final := range []string{wire.PreheatSuccess, wire.PreheatFailed} {
		t.Run(final, func(t *testing.T) {
			var polls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				st := wire.PreheatStatus{ID: "abc", Type: "image", State: wire.PreheatRunning}
				if r.Method == http.MethodGet && polls.Add(1) > 1 {
					st.State = final
					if final == wire.PreheatFailed {
						st.Error = "registry answered 404"
					}
				}
				json.NewEncoder(w).Encode(st)
			}))
			defer srv.Close()
			cmd := newCommand()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetArgs([]string{"preheat", "127.0.0.1:5000/a:1", "--wait", "--poll", "10ms", "--supernode", strings.TrimPrefix(srv.URL, "http://")})
			err := cmd.Execute()
			if (err == nil) != (final == wire.PreheatSuccess) {
				t.Fatalf("Execute: %v (output %s)", err, out.String())
			}
			if final == wire.PreheatFailed && !strings.Contains(err.Error(), "404") {
				t.Errorf("error %v does not say why", err)
			}
		})
	}
}
