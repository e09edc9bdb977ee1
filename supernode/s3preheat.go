package supernode

// s3 preheats: dfctl preheat s3://BUCKET/KEY.
//
// Whoever asks for the preheat looks the object up with their own
// credentials and sends, with its s3:// URL (the identity), a presigned GET
// URL for that object version and the task ID its ETag gives. The
// supernode takes them exactly as it takes an s3 registration (checkS3,
// s3.go): the URL must name the same bucket and key at an endpoint
// --s3-endpoint allows, and the store, asked through it, must answer with
// the ETag the task ID derives from. Only then is the preheat accepted; its
// seed fetches the whole object through that URL, and the task is the one
// every peer reading that object version registers. The presigned URL is
// checked before the job exists and dropped from the job's request: it
// lives on only as the seed's source in the gate, in memory.

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/wire"
)

// normalizeS3Preheat checks the shape of a preheat of an s3:// URL (no
// store is asked) and makes its URL canonical.
func normalizeS3Preheat(req *wire.PreheatRequest) error {
	u, err := objstore.ParseURL(req.URL)
	if err != nil {
		return err
	}
	if u.IsPrefix() {
		return fmt.Errorf("%s: preheating an s3 prefix is not supported: preheat its objects one by one "+
			"(a dfmount of the prefix shares each object through the swarm as it is read)", u)
	}
	switch req.Type {
	case "", wire.PreheatFile:
		req.Type = wire.PreheatFile
	default:
		return fmt.Errorf("%s: an s3 object is preheated as a file, not as %q", u, req.Type)
	}
	if req.Digest != "" || len(req.Filters) > 0 || len(req.Headers) > 0 || req.Platform != "" {
		return fmt.Errorf("%s: s3 preheats take no digest, filters, headers or platform (the presigned URL is the seed's only credential)", u)
	}
	if req.S3Presigned == "" {
		return fmt.Errorf("%s: no presigned GET URL (s3Presigned) for the seed; dfctl preheat %s makes one with your AWS credentials", u, u)
	}
	if !isTaskID(req.TaskID) {
		return fmt.Errorf("%s: taskID must be the object version's task ID (64 hex digits, from bucket, key and ETag)", u)
	}
	req.URL = u.String()
	return nil
}

// isTaskID reports whether s is 64 lower-case hex digits.
func isTaskID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// admitS3Preheat runs the checks of an s3 registration on a normalized s3
// preheat: on success the seed holds req's presigned URL as its source for
// req.TaskID. Its errors are *s3Refusal.
func (s *Supernode) admitS3Preheat(ctx context.Context, req *wire.PreheatRequest) error {
	if len(s.s3.endpoints) == 0 {
		return &s3Refusal{http.StatusForbidden, wire.CodeForbidden,
			fmt.Sprintf("%s: cannot preheat: this supernode does not fetch from object stores (start it with --s3-endpoint naming the store)", req.URL)}
	}
	_, err := s.checkS3(ctx, &wire.RegisterRequest{PeerID: "preheat", URL: req.URL, TaskID: req.TaskID, Tag: req.Tag,
		S3Presigned: req.S3Presigned})
	var re *s3Refusal
	if err != nil && !errors.As(err, &re) {
		return &s3Refusal{http.StatusBadGateway, wire.CodeOrigin, err.Error()}
	}
	return err
}

// showURL is a preheat's URL as logs and status show it: an s3:// URL as
// it is (keys are literal: "?" is part of one), others redacted.
func showURL(raw string) string {
	if objstore.IsURL(raw) {
		if u, err := objstore.ParseURL(raw); err == nil {
			return u.String()
		}
		return "<invalid s3 URL>"
	}
	return manifest.RedactURL(raw)
}
