package p2p

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/objstore"
)

func TestS3SourcePresigns(t *testing.T) {
	c, err := objstore.New(context.Background(), objstore.Options{Endpoint: "http://127.0.0.1:9", PathStyle: true,
		Region: "us-east-1", AccessKeyID: "AKIDP2P", SecretAccessKey: "p2p-secret"})
	if err != nil {
		t.Fatal(err)
	}
	oi := objstore.ObjectInfo{Bucket: "bkt", Key: "a/b.bin", ETag: "e", VersionID: "v3", Size: 10}
	p := &Peer{}
	id := S3TaskID(oi, "")
	src := p.s3.add(id, &s3Source{obj: c, oi: oi})
	if again := p.s3.add(id, &s3Source{obj: c, oi: oi}); again != src {
		t.Fatal("a second open of the same object got another presigner")
	}
	first, err := p.s3Presigned(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := objstore.CheckPresigned(first, oi.URL(), []objstore.Endpoint{{Scheme: "http", Host: "127.0.0.1", Port: "9"}}, time.Now()); err != nil {
		t.Fatalf("the peer's presigned URL does not pass the supernode's check: %v", err)
	}
	if !strings.Contains(first, "versionId=v3") || strings.Contains(first, "p2p-secret") {
		t.Errorf("presigned URL not pinned to the version, or holding the secret: %s", objstore.RedactPresigned(first))
	}
	// Reused for half its life, then renewed.
	if again, _ := p.s3Presigned(context.Background(), id); again != first {
		t.Error("a fresh presigned URL was not reused")
	}
	src.mu.Lock()
	src.cur.Expires = time.Now().Add(objstore.PresignExpiry/2 - time.Second)
	src.mu.Unlock()
	if _, err := p.s3Presigned(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if left := time.Until(src.cur.Expires); left < objstore.PresignExpiry-time.Minute {
		t.Errorf("a URL past half its life was not renewed: %v left", left)
	}
	// Other tasks carry none; closing both opens forgets the presigner.
	if u, err := p.s3Presigned(context.Background(), strings.Repeat("0", 64)); u != "" || err != nil {
		t.Errorf("another task got a presigned URL: %q, %v", u, err)
	}
	p.s3.drop(id)
	if p.s3.get(id) == nil {
		t.Fatal("the presigner went with the first close of two")
	}
	p.s3.drop(id)
	if p.s3.get(id) != nil {
		t.Fatal("the presigner outlived the last close")
	}
}
