package peerflags

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/objstore"
)

// S3 holds the flags that say how to reach an S3-compatible store for
// s3://BUCKET/KEY URLs. Credentials come from the standard AWS chain
// (environment, shared config and credentials files, web identity), never
// from flags.
type S3 struct {
	Endpoint  string
	Region    string
	PathStyle bool
	Profile   string
}

// Register adds --s3-endpoint, --s3-region, --s3-path-style and
// --s3-profile to f.
func (s *S3) Register(f *pflag.FlagSet) {
	f.StringVar(&s.Endpoint, "s3-endpoint", "", "base URL of an S3-compatible store for s3:// URLs, e.g. http://127.0.0.1:8333 (default: AWS, or AWS_ENDPOINT_URL_S3)")
	f.StringVar(&s.Region, "s3-region", "", "region that signs s3:// requests (default: AWS_REGION, the shared config, else us-east-1)")
	f.BoolVar(&s.PathStyle, "s3-path-style", false, "address s3:// buckets as ENDPOINT/BUCKET/KEY (most S3-compatible stores need it)")
	f.StringVar(&s.Profile, "s3-profile", "", "profile of the shared AWS config and credentials files (default: AWS_PROFILE or default)")
}

// Client returns a store client for these settings; it contacts nothing
// until used.
func (s *S3) Client(ctx context.Context) (*objstore.Client, error) {
	c, err := objstore.New(ctx, objstore.Options{Endpoint: s.Endpoint, Region: s.Region, PathStyle: s.PathStyle, Profile: s.Profile})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	return c, nil
}
