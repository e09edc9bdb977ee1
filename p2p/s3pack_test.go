package p2p

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/objstore"
)

// A pack registers as the supernode checks it: the task ID from its member
// list (objstore.PackTaskID) is RangeTaskID's, and each member carries a
// presigned URL for exactly its object, reused for half its life.
func TestS3PackMembers(t *testing.T) {
	c, err := objstore.New(context.Background(), objstore.Options{Endpoint: "http://127.0.0.1:9", PathStyle: true,
		Region: "us-east-1", AccessKeyID: "AKIDP2P", SecretAccessKey: "p2p-secret"})
	if err != nil {
		t.Fatal(err)
	}
	var objs []objstore.ObjectInfo
	for i := range 5 {
		objs = append(objs, objstore.ObjectInfo{Bucket: "bkt", Key: fmt.Sprintf("d/%d", 4-i), ETag: fmt.Sprint("e", i), Size: int64(10 + i)})
	}
	pack, err := objstore.NewPack("bkt", objs)
	if err != nil {
		t.Fatal(err)
	}
	var src RangeSource = pack.WithClient(c)
	ps, ok := src.(S3PackSource)
	if !ok || ps.Client() != c || ps.Bucket() != "bkt" {
		t.Fatal("objstore.Pack is not an S3PackSource with its client")
	}
	for _, tag := range []string{"", "t"} {
		if RangeTaskID(src, tag) != objstore.PackTaskID(pack, tag) {
			t.Fatalf("tag %q: RangeTaskID and objstore.PackTaskID differ", tag)
		}
	}
	p := &Peer{}
	id := RangeTaskID(src, "")
	p.s3.add(id, &s3Source{obj: c, members: ps.Objects(), oi: objstore.ObjectInfo{Bucket: "bkt", Key: "d/", Size: src.Size()}})
	if u, err := p.s3Presigned(context.Background(), id); u != "" || err != nil {
		t.Fatalf("a pack carries a single presigned URL: %v", err)
	}
	ms, err := p.s3Pack(context.Background(), id)
	if err != nil || len(ms) != 5 {
		t.Fatalf("%d members, %v", len(ms), err)
	}
	ep := []objstore.Endpoint{{Scheme: "http", Host: "127.0.0.1", Port: "9"}}
	for i, m := range ms {
		want := ps.Objects()[i]
		if m.Key != want.Key || m.ETag != want.ETag || m.Size != want.Size {
			t.Errorf("member %d: %s, want %+v", i, m, want)
		}
		if _, err := objstore.CheckPresigned(m.Presigned, want.URL(), ep, time.Now()); err != nil {
			t.Errorf("member %d: %v", i, err)
		}
	}
	if again, _ := p.s3Pack(context.Background(), id); again[0].Presigned != ms[0].Presigned {
		t.Error("fresh member URLs were not reused")
	}
	if other, _ := p.s3Pack(context.Background(), RangeTaskID(src, "x")); other != nil {
		t.Error("another task got members")
	}
}
