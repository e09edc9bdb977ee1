// Package wire owns the supernode's control-plane protocol: the JSON messages
// peers and the supernode exchange over HTTP, and a client that fails over
// between supernodes. It holds no scheduling logic and must not import the
// peer engine or the supernode itself.
//
// Endpoints (all JSON, POST bodies, errors as ErrorResponse):
//
//	POST /api/v1/tasks/register          RegisterRequest  -> RegisterResponse
//	POST /api/v1/tasks/sync              SyncRequest      -> SyncResponse
//	POST /api/v1/peers/heartbeat         HeartbeatRequest -> 204, or 404 unknown_peer
//	POST /api/v1/peers/announce          AnnounceRequest  -> 204
//	POST /api/v1/peers/leave             LeaveRequest     -> 204
//	GET  /api/v1/status                                   -> Status
//	GET  /api/v1/tasks/{taskID}                           -> TaskStatus
//	GET  /api/v1/dashboard                                -> the dashboard's document (supernode/dashboard)
//	GET  /api/v1/tasks/{taskID}/pieces                    -> piece map: seed pieces, holders per piece
//	GET  /  (the dashboard page, public; its data needs the admin token)
//	GET  /healthz, GET /metrics (Prometheus)
//
// Authentication (when the cluster has a token; see package trust and the
// README's "Security"): every call but GET /healthz carries
// "Authorization: Bearer <credential>". Register and announce accept the
// cluster token for a peer ID the supernode does not know yet, or that
// peer's own credential; sync, heartbeat and leave accept only the peer's
// credential. The supernode hands a peer its credential (and a fresh one
// when half of its lifetime has passed) in the PeerCredentialHeader of its
// answers. Status, task status and preheats take the admin token (the
// cluster token when no admin token is set); registry notifications take
// their own webhook token.
//
// The data plane (pieces) is served by every peer and by the supernode's seed
// under /peer/ (see package p2p/upload).
package wire

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
)

// Host describes a peer's host: where it uploads from and where it sits.
type Host struct {
	Hostname string `json:"hostname"`
	// UploadAddr is host:port of the peer's upload server, as other peers reach it.
	UploadAddr string `json:"uploadAddr"`
	IDC        string `json:"idc,omitempty"`
	Rack       string `json:"rack,omitempty"`
	// UploadSlots is how many piece uploads the peer serves at once.
	UploadSlots int `json:"uploadSlots,omitempty"`
}

// RegisterRequest asks the supernode to schedule a download of URL.
type RegisterRequest struct {
	PeerID string `json:"peerID"`
	Host   Host   `json:"host"`
	URL    string `json:"url"`
	// Header is passed to the origin by the seed and nowhere else: it is
	// never logged, stored, shown in status or sent to peers.
	Header  http.Header `json:"header,omitempty"`
	Tag     string      `json:"tag,omitempty"`
	Filters []string    `json:"filters,omitempty"`
	// TaskID, when set, must equal the ID derived from URL, Tag and Filters
	// (or be the digest task ID when Digest is set).
	TaskID string `json:"taskID,omitempty"`
	// Digest, e.g. "sha256:<hex>", names content-addressed data (an OCI
	// blob): the task ID derives from it.
	Digest string `json:"digest,omitempty"`
	// Lazy asks the seed not to fetch the whole content: it fetches the
	// pieces peers ask it for (a FUSE mount reading a few records). A later
	// registration without Lazy starts the full fetch.
	Lazy bool `json:"lazy,omitempty"`
	// Sealed, on a registration again after a failover, is the last
	// digest list the peer got for the task, sealed by a supernode (see
	// SealedDigests).
	Sealed *SealedDigests `json:"sealed,omitempty"`
	// S3Presigned, for an s3://BUCKET/KEY URL, is a presigned GET URL for
	// that object version (short-lived, signed by the registering peer;
	// its AWS credentials never leave it). The supernode's seed fetches
	// through it like an HTTP origin, once it checked that it names the
	// same object at an allowed endpoint and that the store's answer
	// matches TaskID (objstore.TaskID: bucket, key, ETag). It is a secret
	// like Header: never logged, stored, shown in status or sent to peers.
	S3Presigned string `json:"s3Presigned,omitempty"`
	// S3Pack, for a pack task (URL s3://BUCKET/PREFIX/, the directory, for
	// display only; TaskID from objstore.PackTaskID), lists the pack's
	// objects in pack order (key order), each with a presigned GET URL
	// signed by the registering peer. The supernode takes it only when
	// every URL names its object at an allowed endpoint, the list gives
	// TaskID, and the store, asked through each URL, answers with the
	// listed ETag and size; its seed then reads the pack's pieces through
	// these URLs. The URLs are secrets like S3Presigned.
	S3Pack []S3PackMember `json:"s3Pack,omitempty"`
}

// S3PackMember is one object of a pack registration (RegisterRequest.S3Pack).
// Its Presigned URL is a secret: String and GoString redact it.
type S3PackMember struct {
	Key  string `json:"key"`
	ETag string `json:"etag"` // without quotes
	Size int64  `json:"size"`
	// Presigned is a presigned GET URL for this object version.
	Presigned string `json:"presigned"`
}

// String describes the member with its presigned URL's query redacted.
func (m S3PackMember) String() string {
	u, _, _ := strings.Cut(m.Presigned, "?")
	if u != m.Presigned {
		u += "?REDACTED"
	}
	return fmt.Sprintf("{%q etag=%q size=%d %s}", m.Key, m.ETag, m.Size, u)
}

// GoString redacts for %#v too.
func (m S3PackMember) GoString() string { return "wire.S3PackMember" + m.String() }

// PeerCredentialHeader, on a supernode's answer, carries a credential that
// speaks for the calling peer; the client uses it for its later calls.
const PeerCredentialHeader = "X-Damselfly-Peer-Credential"

// Parent is a peer (or the seed) a child may download pieces from.
type Parent struct {
	PeerID string `json:"peerID"`
	Addr   string `json:"addr"`
	Seed   bool   `json:"seed,omitempty"`
}

// RegisterResponse describes the task and the first parents to use.
type RegisterResponse struct {
	TaskID    string `json:"taskID"`
	Length    int64  `json:"length"`
	PieceSize int64  `json:"pieceSize"`
	ETag      string `json:"etag,omitempty"`
	// LastModified is the origin's validator, kept so caches can tell
	// whether content changed.
	LastModified string `json:"lastModified,omitempty"`
	// Digests[i] is "sha256:<hex>" of piece i once the seed has it, "" before.
	Digests []string `json:"digests"`
	// SeedDone is true once the seed holds the whole content.
	SeedDone bool     `json:"seedDone"`
	Parents  []Parent `json:"parents"`
	// TaskCredential, when the cluster has a token, lets this peer fetch
	// the task's pieces from its parents' upload servers (sent to them as
	// "Authorization: Bearer <TaskCredential>").
	TaskCredential string `json:"taskCredential,omitempty"`
	// Seal, when the supernodes share a seal key, vouches for Digests
	// (with this task's ID, layout, ETag and LastModified) toward other
	// supernodes; the peer keeps it to present after a failover.
	Seal string `json:"seal,omitempty"`
}

// Layout returns the task's piece layout.
func (r *RegisterResponse) Layout() manifest.Layout {
	return manifest.Layout{Length: r.Length, PieceSize: r.PieceSize}
}

// Failure reasons a child reports against a parent.
const (
	ReasonCorrupt     = "corrupt"     // served a piece whose digest did not match
	ReasonUnreachable = "unreachable" // connection refused or reset
	ReasonTimeout     = "timeout"     // too slow to serve a piece
	ReasonBadResponse = "bad_response"
)

// ParentReport reports a failing parent.
type ParentReport struct {
	PeerID string `json:"peerID"`
	Reason string `json:"reason"`
}

// SyncRequest reports progress on a task and asks for digests and parents.
// Peers send one every few hundred milliseconds while downloading.
type SyncRequest struct {
	PeerID string `json:"peerID"`
	TaskID string `json:"taskID"`
	// Finished lists pieces finished since the last successful sync.
	Finished []int `json:"finished,omitempty"`
	// KnownDigests is how many piece digests the peer already knows; the
	// response carries the digest list only when the seed knows more.
	KnownDigests int `json:"knownDigests"`
	// BadParents reports parents that failed since the last sync.
	BadParents []ParentReport `json:"badParents,omitempty"`
	// Done is set when the peer holds the whole task.
	Done bool `json:"done,omitempty"`
	// WantParents asks for fresh parents (the peer lacks useful ones).
	WantParents bool `json:"wantParents,omitempty"`
	// BytesFromPeers and BytesFromSeed are the peer's cumulative counters
	// for this task (for the status API).
	BytesFromPeers int64 `json:"bytesFromPeers,omitempty"`
	BytesFromSeed  int64 `json:"bytesFromSeed,omitempty"`
	// RefreshTaskCredential asks for a new TaskCredential (the peer's
	// expires within half its lifetime).
	RefreshTaskCredential bool `json:"refreshTaskCredential,omitempty"`
}

// SyncResponse answers a SyncRequest.
type SyncResponse struct {
	Digests  []string `json:"digests,omitempty"`
	SeedDone bool     `json:"seedDone"`
	// Parents, when non-empty, are parents to add.
	Parents []Parent `json:"parents,omitempty"`
	// SeedError is set when the seed gave up on the origin.
	SeedError string `json:"seedError,omitempty"`
	// TaskCredential answers RefreshTaskCredential.
	TaskCredential string `json:"taskCredential,omitempty"`
	// Seal vouches for Digests, as RegisterResponse.Seal.
	Seal string `json:"seal,omitempty"`
}

// SealedDigests is a digest list a supernode handed out, with what its
// seal covers. A task's new owner (after a failover) adopts the digests
// when the seal verifies under the supernodes' seal key and the content
// version matches its own: its seed then need not fetch the pieces peers
// hold to vouch for them. A seal is an HMAC under a key peers do not hold
// (package trust), so a peer can present only lists a supernode sealed.
type SealedDigests struct {
	Length       int64    `json:"length"`
	PieceSize    int64    `json:"pieceSize"`
	ETag         string   `json:"etag,omitempty"`
	LastModified string   `json:"lastModified,omitempty"`
	Digests      []string `json:"digests"`
	Seal         string   `json:"seal"`
	// Pieces are digests the peer got with pieces from the seed (its
	// PieceSealHeader) after the last list, each sealed alone.
	Pieces []SealedPiece `json:"pieces,omitempty"`
}

// SealedPiece is one piece's digest, sealed alone (see SealedDigests).
type SealedPiece struct {
	Piece  int    `json:"piece"`
	Digest string `json:"digest"`
	Seal   string `json:"seal"`
}

// HeartbeatRequest keeps a peer (and the tasks it seeds) alive.
type HeartbeatRequest struct {
	PeerID string `json:"peerID"`
	// UploadedBytes is the piece bytes the peer's upload server has served
	// since it started (for the dashboard's upload rates).
	UploadedBytes int64 `json:"uploadedBytes,omitempty"`
}

// AnnounceRequest tells a supernode (for example one that restarted) which
// tasks a peer holds. Tasks the supernode does not know are ignored.
type AnnounceRequest struct {
	PeerID string          `json:"peerID"`
	Host   Host            `json:"host"`
	Tasks  []AnnouncedTask `json:"tasks"`
}

// AnnouncedTask is one task a peer holds.
type AnnouncedTask struct {
	TaskID string          `json:"taskID"`
	Bitmap manifest.Bitmap `json:"bitmap"`
}

// LeaveRequest says a peer is going away.
type LeaveRequest struct {
	PeerID string `json:"peerID"`
}

// Error codes in ErrorResponse.
const (
	CodeBadRequest  = "bad_request"
	CodeUnknownPeer = "unknown_peer"
	CodeUnknownTask = "unknown_task"
	// CodeUnauthorized: a missing or invalid token or credential (401), or
	// a credential that speaks for another peer.
	CodeUnauthorized = "unauthorized"
	// CodeForbidden: the origin did not accept the requester's own
	// credentials for private content (403).
	CodeForbidden = "forbidden"
	// CodeRateLimited: too many registrations from this client (429, with
	// Retry-After).
	CodeRateLimited  = "rate_limited"
	CodeOrigin       = "origin_error"
	CodeInternal     = "internal"
	CodeShuttingDown = "shutting_down"
)

// ErrorResponse is the body of every non-2xx API answer.
type ErrorResponse struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// OriginStatus is the origin's HTTP status for CodeOrigin, 0 otherwise.
	OriginStatus int `json:"originStatus,omitempty"`
}

// Status is the supernode's status document.
type Status struct {
	Supernode string       `json:"supernode"`
	Uptime    string       `json:"uptime"`
	Tasks     []TaskStatus `json:"tasks"`
	Peers     []PeerStatus `json:"peers"`
	// TotalTasks and TotalPeers count everything the supernode knows;
	// Tasks and Peers hold the page from Offset of at most Limit entries
	// (GET /api/v1/status?offset=&limit=).
	TotalTasks int `json:"totalTasks"`
	TotalPeers int `json:"totalPeers"`
	Offset     int `json:"offset"`
	Limit      int `json:"limit"`
}

// TaskStatus describes one task. URL is redacted (no credentials or query values).
type TaskStatus struct {
	TaskID          string    `json:"taskID"`
	URL             string    `json:"url"`
	Length          int64     `json:"length"`
	PieceSize       int64     `json:"pieceSize"`
	State           string    `json:"state"`
	Error           string    `json:"error,omitempty"`
	SeedPieces      int       `json:"seedPieces"`
	NumPieces       int       `json:"numPieces"`
	BytesFromOrigin int64     `json:"bytesFromOrigin"`
	BytesServed     int64     `json:"bytesServed"`
	BytesPeerToPeer int64     `json:"bytesPeerToPeer"`
	Peers           int       `json:"peers"`
	PeersDone       int       `json:"peersDone"`
	CreatedAt       time.Time `json:"createdAt"`
}

// PeerStatus describes one peer.
type PeerStatus struct {
	PeerID   string    `json:"peerID"`
	Hostname string    `json:"hostname"`
	Addr     string    `json:"addr"`
	IDC      string    `json:"idc,omitempty"`
	Rack     string    `json:"rack,omitempty"`
	Tasks    int       `json:"tasks"`
	Isolated bool      `json:"isolated"`
	Reason   string    `json:"reason,omitempty"`
	Failures int       `json:"failures"`
	LastSeen time.Time `json:"lastSeen"`
}
