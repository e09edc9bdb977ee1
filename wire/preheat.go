package wire

// Preheat: the supernode fetches a file, an object of an S3-compatible
// store, or every blob of an image, into its seed's cache before anyone
// asks for it.
//
//	POST /api/v1/preheats       PreheatRequest -> 202 PreheatStatus
//	GET  /api/v1/preheats       -> [PreheatStatus], newest first
//	GET  /api/v1/preheats/{id}  -> PreheatStatus

import (
	"net/http"
	"time"
)

// Preheat types and states.
const (
	PreheatFile  = "file"
	PreheatImage = "image"

	PreheatPending = "pending"
	PreheatRunning = "running"
	PreheatSuccess = "success"
	PreheatFailed  = "failed"
)

// PreheatRequest asks the supernode to warm its cache.
type PreheatRequest struct {
	// Type is "image" (URL is a manifest URL, /v2/NAME/manifests/REF) or
	// "file"; empty means image for a manifest URL, file otherwise.
	Type string `json:"type,omitempty"`
	URL  string `json:"url"`
	// Headers go to the origin or registry (credentials: a Basic one is
	// exchanged for a bearer token when the registry asks for one). They
	// are never logged, stored or shown.
	Headers http.Header `json:"headers,omitempty"`
	// Platform picks an image from an index, os/arch[/variant]
	// (linux/amd64).
	Platform string `json:"platform,omitempty"`
	// Digest ("sha256:...") is the expected digest of a file; its task is
	// then keyed by it.
	Digest string `json:"digest,omitempty"`
	// Tag and Filters derive a file's task ID as dfget's do.
	Tag     string   `json:"tag,omitempty"`
	Filters []string `json:"filters,omitempty"`

	// S3Presigned, for an s3://BUCKET/KEY URL (a file preheat), is a
	// presigned GET URL for that object version, signed by whoever asks
	// for the preheat with their own credentials (objstore.PresignGet):
	// the seed fetches the object with it. The supernode takes it as it
	// takes a registration's (wire.RegisterRequest.S3Presigned): same
	// bucket and key, at an endpoint its --s3-endpoint allows, accepted by
	// the store with the ETag TaskID derives from. It is a secret: never
	// logged, stored or shown (the preheat's status shows the s3:// URL).
	S3Presigned string `json:"s3Presigned,omitempty"`
	// TaskID, for an s3:// URL, is the object version's task ID
	// (objstore.TaskID: bucket, key and ETag, with Tag); the supernode
	// checks it against the store's answer.
	TaskID string `json:"taskID,omitempty"`
}

// PreheatStatus describes one preheat. URLs are redacted.
type PreheatStatus struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	URL      string `json:"url"`
	Platform string `json:"platform,omitempty"`
	// Trigger is "api" or "registry" (a push notification).
	Trigger string `json:"trigger"`
	State   string `json:"state"`
	Error   string `json:"error,omitempty"`
	// Blobs are the tasks being warmed (once an image is resolved).
	Blobs []PreheatBlob `json:"blobs"`
	// Length is the bytes of all blobs whose length is known; Present the
	// bytes already in the cache.
	Length     int64      `json:"length"`
	Present    int64      `json:"present"`
	CreatedAt  time.Time  `json:"createdAt"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// PreheatBlob is one task of a preheat.
type PreheatBlob struct {
	URL     string `json:"url"`
	Digest  string `json:"digest,omitempty"`
	TaskID  string `json:"taskID"`
	State   string `json:"state"`
	Length  int64  `json:"length"`
	Present int64  `json:"present"`
	Error   string `json:"error,omitempty"`
}
