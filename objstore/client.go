package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// maxIdleConnsPerHost is how many idle connections to the store the
// default HTTP client keeps.
const maxIdleConnsPerHost = 128

// DefaultRegion is the region used when neither Options nor the AWS chain
// (AWS_REGION, the shared config file) gives one.
const DefaultRegion = "us-east-1"

// Options says how to reach the store and whose credentials to sign with.
// The zero value means AWS S3 with the standard credential chain.
type Options struct {
	// Endpoint is the store's base URL, such as http://127.0.0.1:8333, for
	// S3-compatible stores; empty means AWS (or AWS_ENDPOINT_URL_S3 /
	// AWS_ENDPOINT_URL and the shared config's endpoint_url).
	Endpoint string
	// Region signs the requests; empty means the chain's, else DefaultRegion.
	Region string
	// PathStyle addresses buckets as ENDPOINT/BUCKET/KEY instead of
	// BUCKET.ENDPOINT/KEY; most S3-compatible stores need it.
	PathStyle bool
	// Profile selects a profile of the shared config and credentials files;
	// empty means AWS_PROFILE or "default".
	Profile string
	// AccessKeyID and SecretAccessKey (and SessionToken), when set, are used
	// instead of the chain. They are never printed: String masks them.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Anonymous sends unsigned requests, for public buckets.
	Anonymous bool
	// HTTPClient, when set, carries the requests (for timeouts, proxies or
	// counting bytes) as it is: AWS_CA_BUNDLE and the shared config's
	// ca_bundle do not apply to it. nil means the SDK's default client.
	HTTPClient *http.Client
	// ListPageSize caps the entries per ListObjectsV2 page; 0 means the
	// store's default (1,000 on AWS).
	ListPageSize int32
}

// String describes the options with the secret and session token masked, so
// that logging them (with %v or %+v) leaks nothing.
func (o Options) String() string {
	mask := func(s string) string {
		if s == "" {
			return `""`
		}
		return "***"
	}
	return fmt.Sprintf("{Endpoint:%q Region:%q PathStyle:%t Profile:%q AccessKeyID:%q SecretAccessKey:%s SessionToken:%s Anonymous:%t ListPageSize:%d}",
		o.Endpoint, o.Region, o.PathStyle, o.Profile, o.AccessKeyID, mask(o.SecretAccessKey), mask(o.SessionToken), o.Anonymous, o.ListPageSize)
}

// GoString masks the secrets for %#v too.
func (o Options) GoString() string { return "objstore.Options" + o.String() }

// Client talks to one store with one set of credentials. It is safe for
// concurrent use.
type Client struct {
	s3       *s3.Client
	pageSize int32
	region   string
	// background bounds the GETs of background fetches (see
	// WithBackground) in flight at once, across all packs.
	background chan struct{}
}

// New returns a client for the store opts describes. It loads the AWS
// configuration (environment, shared files, web identity) but does not
// contact the store; credentials are fetched when the first request is
// signed, and their absence makes requests fail with ErrNoCredentials.
func New(ctx context.Context, opts Options) (*Client, error) {
	var loads []func(*config.LoadOptions) error
	if opts.Region != "" {
		loads = append(loads, config.WithRegion(opts.Region))
	}
	if opts.Profile != "" {
		loads = append(loads, config.WithSharedConfigProfile(opts.Profile))
	}
	switch {
	case opts.Anonymous:
		loads = append(loads, config.WithCredentialsProvider(aws.AnonymousCredentials{}))
	case opts.AccessKeyID != "" || opts.SecretAccessKey != "":
		loads = append(loads, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken)))
	}
	// Stores other than AWS rarely implement the flexible checksums the SDK
	// sends by default; ask for them only when an operation requires them.
	loads = append(loads,
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		// The SDK's message names files and settings, never secret values.
		return nil, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok && opts.HTTPClient == nil {
		// Reads of many small objects (a pack's pieces) keep dozens of
		// GETs in flight: keep that many connections open between them
		// instead of the SDK's 10, which would make every burst open and
		// close connections.
		cfg.HTTPClient = bc.WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, maxIdleConnsPerHost)
			tr.MaxIdleConns = max(tr.MaxIdleConns, 2*maxIdleConnsPerHost)
		})
	}
	if cfg.Credentials != nil && !opts.Anonymous {
		cfg.Credentials = aws.NewCredentialsCache(chainProvider{cfg.Credentials})
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		if opts.HTTPClient != nil {
			o.HTTPClient = opts.HTTPClient
		}
		// Ranged GETs of a part of an object carry no whole-object checksum
		// to validate; do not log that they were skipped.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	return &Client{s3: client, pageSize: opts.ListPageSize, region: cfg.Region,
		background: make(chan struct{}, maxBackgroundGets)}, nil
}

// Region returns the region requests are signed for.
func (c *Client) Region() string { return c.region }

// chainProvider marks a failure to find credentials with ErrNoCredentials.
type chainProvider struct{ p aws.CredentialsProvider }

func (c chainProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := c.p.Retrieve(ctx)
	if err != nil {
		return creds, fmt.Errorf("%w: %v", ErrNoCredentials, err)
	}
	return creds, nil
}

// Head looks up one object: its size, ETag and version ID.
func (c *Client) Head(ctx context.Context, bucket, key string) (ObjectInfo, error) {
	out, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return ObjectInfo{}, wrapErr("head", bucket, key, err)
	}
	info := ObjectInfo{
		Bucket:    bucket,
		Key:       key,
		Size:      aws.ToInt64(out.ContentLength),
		ETag:      normalizeETag(aws.ToString(out.ETag)),
		VersionID: normalizeVersion(aws.ToString(out.VersionId)),
	}
	if out.LastModified != nil {
		info.LastModified = *out.LastModified
	}
	if info.ETag == "" && info.VersionID == "" {
		return ObjectInfo{}, &Error{Op: "head", Bucket: bucket, Key: key,
			Err: errors.New("the store gave neither an ETag nor a version ID, so the content cannot be identified")}
	}
	return info, nil
}

// GetRange reads length bytes of the object from offset off (to the end of
// the object when length < 0), from the very version obj describes (as a
// Head returned it): by version ID when there is one, and on the condition
// that the ETag still matches, so that a changed object fails with
// ErrObjectChanged instead of mixing versions. The caller closes the
// returned body; reading it yields exactly the bytes asked for (fewer only
// if the object ends first), or an error.
func (c *Client) GetRange(ctx context.Context, obj ObjectInfo, off, length int64) (io.ReadCloser, error) {
	if off == obj.Size && length <= 0 || length == 0 && off >= 0 && off <= obj.Size {
		return io.NopCloser(strings.NewReader("")), nil // nothing to read; S3 would refuse the range
	}
	if off < 0 || off >= obj.Size {
		return nil, &Error{Op: "get range", Bucket: obj.Bucket, Key: obj.Key,
			Err: fmt.Errorf("range of %d bytes at %d outside an object of %d bytes", length, off, obj.Size)}
	}
	in := &s3.GetObjectInput{Bucket: &obj.Bucket, Key: &obj.Key}
	rng := "bytes=" + strconv.FormatInt(off, 10) + "-"
	want := obj.Size - off
	if length > 0 {
		rng += strconv.FormatInt(off+length-1, 10)
		want = min(want, length)
	}
	in.Range = &rng
	if obj.VersionID != "" {
		in.VersionId = aws.String(obj.VersionID)
	}
	if obj.ETag != "" {
		in.IfMatch = aws.String(`"` + obj.ETag + `"`)
	}
	op := fmt.Sprintf("get range %d+%d of", off, length)
	out, err := c.s3.GetObject(ctx, in)
	if err != nil {
		return nil, wrapErr(op, obj.Bucket, obj.Key, err)
	}
	if n := aws.ToInt64(out.ContentLength); out.ContentLength != nil && n != want {
		out.Body.Close()
		return nil, &Error{Op: op, Bucket: obj.Bucket, Key: obj.Key,
			Err: fmt.Errorf("the store answered %d bytes where %d were asked", n, want)}
	}
	return &rangeBody{ReadCloser: out.Body, left: want, op: op, bucket: obj.Bucket, key: obj.Key}, nil
}

// rangeBody turns a body that ends early into an error naming the object.
type rangeBody struct {
	io.ReadCloser
	left        int64
	op          string
	bucket, key string
}

func (r *rangeBody) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.ReadCloser.Read(p)
	r.left -= int64(n)
	switch {
	case err == io.EOF && r.left > 0:
		return n, &Error{Op: r.op, Bucket: r.bucket, Key: r.key, Err: fmt.Errorf("body ended %d bytes short: %w", r.left, io.ErrUnexpectedEOF)}
	case err != nil && err != io.EOF:
		return n, &Error{Op: r.op, Bucket: r.bucket, Key: r.key, Err: err}
	case r.left == 0:
		return n, io.EOF
	}
	return n, nil
}
