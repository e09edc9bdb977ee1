package objstore

import (
	"errors"
	"fmt"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

var (
	// ErrAccessDenied means the store refused the credentials (unknown
	// access key, wrong secret) or their permissions.
	ErrAccessDenied = errors.New("access denied")
	// ErrNotFound means the bucket or the object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrObjectChanged means the object no longer is the version a HEAD saw
	// (its ETag or version changed), so its bytes cannot be mixed with
	// those read before.
	ErrObjectChanged = errors.New("object changed since it was looked up")
	// ErrNoCredentials means the AWS chain found no credentials.
	ErrNoCredentials = errors.New("no credentials found")
)

// Error is an error from the store, naming what was being done and on what.
// It never holds credentials or signatures.
type Error struct {
	// Op is what was being done: "head", "get range", "list".
	Op     string
	Bucket string
	Key    string
	// Code is the store's error code (SignatureDoesNotMatch, NoSuchKey...)
	// or, for bodiless answers such as HEAD's, the HTTP status text.
	Code string
	// Err is one of the sentinel errors of this package, when one applies,
	// or the underlying error.
	Err error
}

func (e *Error) Error() string {
	what := fmt.Sprintf("%s %s", e.Op, URL{Bucket: e.Bucket, Key: e.Key})
	switch {
	case errors.Is(e.Err, ErrAccessDenied):
		return fmt.Sprintf("%s: s3: access denied for bucket %s: check the credentials (%s)", what, e.Bucket, e.Code)
	case errors.Is(e.Err, ErrNoCredentials):
		return fmt.Sprintf("%s: s3: no credentials for bucket %s: set them in the environment (AWS_ACCESS_KEY_ID...), the shared credentials file or a web identity: %v", what, e.Bucket, e.Err)
	case errors.Is(e.Err, ErrNotFound):
		return fmt.Sprintf("%s: s3: not found (%s)", what, e.Code)
	case errors.Is(e.Err, ErrObjectChanged):
		return fmt.Sprintf("%s: s3: %v (%s)", what, e.Err, e.Code)
	}
	return fmt.Sprintf("%s: s3: %v", what, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// wrapErr turns an SDK error into an *Error, mapping the store's codes for
// refused credentials, missing objects and failed preconditions to this
// package's sentinels. A cancelled context is passed through wrapped, so
// errors.Is(err, context.Canceled) holds.
func wrapErr(op, bucket, key string, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, Bucket: bucket, Key: key, Err: err}
	if errors.Is(err, ErrNoCredentials) {
		return e
	}
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		e.Code = api.ErrorCode()
	}
	if e.Code == "" && status != 0 {
		e.Code = http.StatusText(status)
	}
	switch e.Code {
	case "SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed":
		e.Err = ErrAccessDenied
		return e
	case "NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound":
		e.Err = ErrNotFound
		return e
	case "PreconditionFailed":
		e.Err = ErrObjectChanged
		return e
	}
	switch status {
	case http.StatusForbidden, http.StatusUnauthorized:
		e.Err = ErrAccessDenied
	case http.StatusNotFound:
		e.Err = ErrNotFound
	case http.StatusPreconditionFailed:
		e.Err = ErrObjectChanged
	}
	return e
}
