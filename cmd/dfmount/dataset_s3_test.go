package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/trust/egress"
)

// TestDatasetS3Entries: a manifest's s3:// entries go to the s3 opener
// (set up once, at mount time), never to the HTTP one or through the
// origin policy; a size that differs from the object's fails that file's
// reads with a clear error; an s3 opener that cannot be set up fails the
// mount.
func TestDatasetS3Entries(t *testing.T) {
	objects := map[string]memContent{"s3://bkt/a.bin": memContent("object-a"), "s3://bkt/ds/b.bin": memContent("bee")}
	srv, _ := authServer(t, func(string) string { return "payload" })
	const manifest = `{"version":1,"files":[
			{"path":"http.bin","size":7,"url":"h.bin"},
			{"path":"a","size":8,"url":"s3://bkt/a.bin"},
			{"path":"short","size":9,"url":"s3://bkt/a.bin"},
			{"path":"b","size":3,"url":"S3://bkt/ds/b.bin"}]}`
	manifestURL := srv.URL + "/ds/manifest.json"
	policy, err := egress.New(egress.Options{Allow: []string{strings.TrimPrefix(srv.URL, "http://")}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var httpOpens []string
	open := func(ctx context.Context, url string) (fusefs.Content, error) {
		mu.Lock()
		httpOpens = append(httpOpens, url)
		mu.Unlock()
		if url == manifestURL {
			return memContent(manifest), nil
		}
		return memContent("payload"), nil
	}
	setups := 0
	s3 := func(context.Context) (fusefs.Opener, error) {
		setups++
		return func(ctx context.Context, url string) (fusefs.Content, error) {
			c, ok := objects[url]
			if !ok {
				return nil, fmt.Errorf("no object %s", url)
			}
			return c, nil
		}, nil
	}
	entries, err := buildTree(context.Background(), &options{kind: "dataset"}, treeOpeners{open: open, policy: policy, s3: s3}, manifestURL)
	if err != nil {
		t.Fatal(err)
	}
	if setups != 1 {
		t.Errorf("s3 opener set up %d times, want once", setups)
	}
	want := map[string]string{"http.bin": "payload", "a": "object-a", "b": "bee"}
	for _, e := range entries {
		buf := make([]byte, e.Size)
		_, err := e.Data.ReadAt(context.Background(), buf, 0)
		if e.Path == "short" {
			if err == nil || !strings.Contains(err.Error(), "s3://bkt/a.bin: content is 8 bytes, metadata says 9") {
				t.Errorf("entry with the wrong size: err %v", err)
			}
			continue
		}
		if err != nil && err != io.EOF {
			t.Errorf("read %s: %v", e.Path, err)
		} else if string(buf) != want[e.Path] {
			t.Errorf("%s: %q, want %q", e.Path, buf, want[e.Path])
		}
	}
	for _, u := range httpOpens {
		if strings.HasPrefix(strings.ToLower(u), "s3:") {
			t.Errorf("s3 entry %s went to the HTTP opener", u)
		}
	}

	t.Run("an s3 opener that cannot be set up fails the mount", func(t *testing.T) {
		bad := func(context.Context) (fusefs.Opener, error) { return nil, errors.New("run dfmount with --no-daemon") }
		_, err := buildTree(context.Background(), &options{kind: "dataset"}, treeOpeners{open: open, policy: policy, s3: bad}, manifestURL)
		if err == nil || !strings.Contains(err.Error(), "--no-daemon") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("without an s3 opener s3 entries fail", func(t *testing.T) {
		entries, err := buildTree(context.Background(), &options{kind: "dataset"}, treeOpeners{open: open, policy: policy}, manifestURL)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Path == "a" {
				if _, err := e.Data.ReadAt(context.Background(), make([]byte, 1), 0); err == nil || !strings.Contains(err.Error(), "not read by this mount") {
					t.Fatalf("err %v", err)
				}
			}
		}
	})
}
