package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/wire"
)

// s3 preheats: dfctl preheat s3://BUCKET/KEY looks the object up with the
// caller's AWS credentials (the standard chain, --s3-* flags as dfget's),
// presigns a GET of that version and sends the presigned URL, with the
// s3:// URL and the task ID its ETag gives, to the task's owner. The
// credentials never leave dfctl; the presigned URL (a secret) goes to the
// supernode only, and is never printed.

// s3PresignExpiry is how long the presigned URL of a preheat stays valid.
// The seed fetches the whole object with it and no peer renews it while
// it does, so it lives longer than a reader's (objstore.PresignExpiry).
const s3PresignExpiry = time.Hour

// s3Presigner is what an s3 preheat needs of a store client
// (*objstore.Client).
type s3Presigner interface {
	Head(ctx context.Context, bucket, key string) (objstore.ObjectInfo, error)
	PresignGet(ctx context.Context, oi objstore.ObjectInfo, expiry time.Duration) (objstore.Presigned, error)
}

// s3URL checks that arg and the flags make an s3 preheat, without asking
// the store.
func (o *preheatOptions) s3URL(arg string) (objstore.URL, error) {
	u, err := objstore.ParseURL(arg)
	if err != nil {
		return objstore.URL{}, err
	}
	switch {
	case u.IsPrefix():
		return objstore.URL{}, fmt.Errorf("%s: preheating an s3 prefix is not supported: preheat its objects one by one "+
			"(a dfmount of the prefix shares each object through the swarm as it is read)", u)
	case o.typ == wire.PreheatImage:
		return objstore.URL{}, fmt.Errorf("%s: an s3 object is preheated as a file, not an image", u)
	case o.digest != "" || len(o.headers) > 0:
		return objstore.URL{}, errors.New("--digest and --header are for http(s) URLs; an s3 object is named by its ETag and read with your AWS credentials")
	}
	return u, nil
}

// s3Request looks the object up and presigns a GET of its version.
func (o *preheatOptions) s3Request(ctx context.Context, u objstore.URL, store s3Presigner) (*wire.PreheatRequest, error) {
	oi, err := store.Head(ctx, u.Bucket, u.Key)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", u, err)
	}
	p, err := store.PresignGet(ctx, oi, s3PresignExpiry)
	if err != nil {
		return nil, fmt.Errorf("presign a GET of %s for the supernode's seed: %w", u, err)
	}
	return &wire.PreheatRequest{Type: wire.PreheatFile, URL: u.String(), TaskID: objstore.TaskID(oi, ""), S3Presigned: p.URL}, nil
}
