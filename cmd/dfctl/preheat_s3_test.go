package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/wire"
)

func TestPreheatS3URL(t *testing.T) {
	tests := []struct {
		name    string
		arg     string
		opts    preheatOptions
		wantErr string
	}{
		{name: "object", arg: "s3://bkt/a/b.bin"},
		{name: "key with ? and #", arg: "s3://bkt/a?b#c"},
		{name: "file type", arg: "s3://bkt/a", opts: preheatOptions{typ: "file"}},
		{name: "prefix", arg: "s3://bkt/a/", wantErr: "prefix is not supported"},
		{name: "bucket", arg: "s3://bkt", wantErr: "prefix is not supported"},
		{name: "bad bucket", arg: "s3://b/x", wantErr: "bucket name"},
		{name: "bucket with a host", arg: "s3://evil.example:9000/x", wantErr: "bucket name"},
		{name: "image type", arg: "s3://bkt/a", opts: preheatOptions{typ: "image"}, wantErr: "not an image"},
		{name: "digest", arg: "s3://bkt/a", opts: preheatOptions{digest: "sha256:00"}, wantErr: "--digest"},
		{name: "header", arg: "s3://bkt/a", opts: preheatOptions{headers: []string{"Authorization: x"}}, wantErr: "--header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := tc.opts.s3URL(tc.arg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || u.String() != tc.arg {
				t.Fatalf("%v, %v", u, err)
			}
		})
	}
}

type fakePresigner struct {
	oi      objstore.ObjectInfo
	headErr error
	expiry  time.Duration
}

func (f *fakePresigner) Head(ctx context.Context, bucket, key string) (objstore.ObjectInfo, error) {
	if f.headErr != nil {
		return objstore.ObjectInfo{}, f.headErr
	}
	return f.oi, nil
}

func (f *fakePresigner) PresignGet(ctx context.Context, oi objstore.ObjectInfo, expiry time.Duration) (objstore.Presigned, error) {
	f.expiry = expiry
	return objstore.Presigned{URL: "http://store/" + oi.Bucket + "/" + oi.Key + "?X-Amz-Signature=secret", Expires: time.Now().Add(expiry)}, nil
}

func TestPreheatS3Request(t *testing.T) {
	var o preheatOptions
	oi := objstore.ObjectInfo{Bucket: "bkt", Key: "a/b.bin", ETag: "abc", Size: 10}
	f := &fakePresigner{oi: oi}
	req, err := o.s3Request(context.Background(), objstore.URL{Bucket: "bkt", Key: "a/b.bin"}, f)
	if err != nil {
		t.Fatal(err)
	}
	if req.URL != "s3://bkt/a/b.bin" || req.Type != wire.PreheatFile || req.TaskID != objstore.TaskID(oi, "") ||
		!strings.Contains(req.S3Presigned, "X-Amz-Signature=secret") || f.expiry != s3PresignExpiry {
		t.Fatalf("request %+v (expiry %v)", req, f.expiry)
	}
	if preheatKey(req) != req.TaskID {
		t.Errorf("the preheat goes to the owner of %s, want the task's", preheatKey(req))
	}
	f.headErr = errors.New("access denied")
	if _, err := o.s3Request(context.Background(), objstore.URL{Bucket: "bkt", Key: "a/b.bin"}, f); err == nil ||
		!strings.Contains(err.Error(), "look up s3://bkt/a/b.bin") {
		t.Fatalf("Head failure: %v", err)
	}
}

// TestPreheatS3Command runs dfctl preheat s3://... against a fake store
// (answering HEAD) and a fake supernode: the request carries the s3 URL,
// the task ID from the ETag and a presigned URL for that object at the
// store, and nothing dfctl prints holds the signature.
func TestPreheatS3Command(t *testing.T) {
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead || r.URL.Path != "/bkt/data/x.bin" || !strings.Contains(r.Header.Get("Authorization"), "AKIDTEST/") {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.Header().Set("ETag", `"0123abcd"`)
		w.Header().Set("Content-Length", "1234")
	}))
	defer store.Close()
	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-key-value")
	var mu sync.Mutex
	var got wire.PreheatRequest
	sn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := wire.PreheatStatus{ID: "abc", Type: "file", URL: "s3://bkt/data/x.bin", State: wire.PreheatRunning}
		if r.Method == http.MethodPost {
			mu.Lock()
			json.NewDecoder(r.Body).Decode(&got)
			mu.Unlock()
		} else {
			st.State = wire.PreheatSuccess
		}
		json.NewEncoder(w).Encode(st)
	}))
	defer sn.Close()
	cmd := newCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"preheat", "s3://bkt/data/x.bin", "--s3-endpoint", store.URL, "--s3-path-style", "--s3-region", "us-east-1",
		"--wait", "--poll", "10ms", "--supernode", strings.TrimPrefix(sn.URL, "http://"), "--log-level", "debug"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("preheat: %v\n%s", err, out.String())
	}
	mu.Lock()
	defer mu.Unlock()
	oi := objstore.ObjectInfo{Bucket: "bkt", Key: "data/x.bin", ETag: "0123abcd"}
	if got.URL != "s3://bkt/data/x.bin" || got.TaskID != objstore.TaskID(oi, "") || got.Type != wire.PreheatFile {
		t.Fatalf("request %+v", got)
	}
	ep, _ := objstore.ParseEndpoint(store.URL)
	chk, err := objstore.CheckPresigned(got.S3Presigned, objstore.URL{Bucket: "bkt", Key: "data/x.bin"}, []objstore.Endpoint{ep}, time.Now())
	if err != nil || chk.AccessKeyID != "AKIDTEST" || time.Until(chk.Expires) < 50*time.Minute {
		t.Fatalf("presigned URL: %+v, %v", chk, err)
	}
	u, _ := url.Parse(got.S3Presigned)
	if sig := u.Query().Get("X-Amz-Signature"); sig == "" || strings.Contains(out.String(), sig) || strings.Contains(out.String(), "secret-key-value") {
		t.Fatalf("dfctl printed a secret:\n%s", out.String())
	}
}
