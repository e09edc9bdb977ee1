package trust

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind says what a credential grants.
type Kind string

const (
	// KindPeer credentials speak for one peer toward the supernode.
	KindPeer Kind = "peer"
	// KindTask credentials let one peer fetch one task's pieces from other
	// peers' upload servers.
	KindTask Kind = "task"
)

const (
	// DefaultTTL is the lifetime of credentials issued by an Issuer whose TTL
	// is zero.
	DefaultTTL = time.Hour
	// MaxTokenLen is the longest credential Verify parses; longer ones are
	// refused before any decoding.
	MaxTokenLen = 1024
	// MaxIDLen bounds peer and task IDs carried in credentials.
	MaxIDLen = 256
	// maxClockSkew is how far in the future a credential's issue time may lie
	// (the supernode's clock may run ahead of a verifying peer's).
	maxClockSkew = time.Minute
)

// Token prefixes: version 1, one per kind. The prefix selects the MAC key and
// is itself covered by the MAC.
const (
	prefixPeer = "dfp1"
	prefixTask = "dft1"
)

// HKDF info labels: one key per credential kind, so that a credential of one
// kind can never verify as the other even if the claims were confused.
const (
	labelPeer = "damselfly credential v1: peer"
	labelTask = "damselfly credential v1: task"
)

// Errors of credential issue and verification; the functions return them
// wrapped, so test with errors.Is.
var (
	ErrNoKey        = errors.New("no credential key configured")
	ErrTooLong      = fmt.Errorf("credential longer than %d bytes", MaxTokenLen)
	ErrMalformed    = errors.New("malformed credential")
	ErrBadSignature = errors.New("credential signature does not verify")
	ErrExpired      = errors.New("credential expired")
	ErrNotYetValid  = errors.New("credential issued in the future")
	ErrWrongKind    = errors.New("credential of the wrong kind")
	ErrWrongPeer    = errors.New("credential speaks for another peer")
	ErrWrongTask    = errors.New("credential is for another task")
	ErrBadID        = fmt.Errorf("peer or task ID empty, longer than %d bytes, or not UTF-8", MaxIDLen)
)

// Key is the credential signing key derived from the cluster token. Every
// peer holding the cluster token derives the same Key, so upload servers
// verify task credentials offline. Like Secret, a Key never prints itself.
type Key struct {
	v *keyValue
}

type keyValue struct {
	peer, task []byte
}

// DeriveKey derives the credential keys (one per Kind) from the cluster token
// with HKDF-SHA256.
func DeriveKey(cluster Secret) (Key, error) {
	if cluster.IsZero() {
		return Key{}, fmt.Errorf("derive credential key: %w", ErrNoSecret)
	}
	peer, err := hkdf.Key(sha256.New, cluster.bytes(), nil, labelPeer, sha256.Size)
	if err != nil {
		return Key{}, fmt.Errorf("derive peer credential key: %w", err)
	}
	task, err := hkdf.Key(sha256.New, cluster.bytes(), nil, labelTask, sha256.Size)
	if err != nil {
		return Key{}, fmt.Errorf("derive task credential key: %w", err)
	}
	return Key{v: &keyValue{peer: peer, task: task}}, nil
}

// IsZero reports whether k is the absent key.
func (k Key) IsZero() bool { return k.v == nil }

// String returns "REDACTED".
func (Key) String() string { return redacted }

// GoString returns "REDACTED".
func (Key) GoString() string { return redacted }

// Format prints "REDACTED" for every verb and flag.
func (Key) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// MarshalJSON encodes the key as the JSON string "REDACTED".
func (Key) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "REDACTED".
func (Key) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue makes log/slog print "REDACTED".
func (Key) LogValue() slog.Value { return slog.StringValue(redacted) }

func (k Key) mac(kind Kind, signed string) []byte {
	key := k.v.peer
	if kind == KindTask {
		key = k.v.task
	}
	m := hmac.New(sha256.New, key)
	io.WriteString(m, signed)
	return m.Sum(nil)
}

// Claims is what a verified credential says.
type Claims struct {
	Kind Kind
	// PeerID is the peer the credential speaks for (KindPeer) or the peer
	// allowed to fetch the task (KindTask).
	PeerID string
	// TaskID is the task whose pieces a KindTask credential grants; empty for
	// KindPeer.
	TaskID    string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Claims payload layout (version 1), all integers big-endian:
//
//	kind    1 byte (1 peer, 2 task)
//	iat     8 bytes, unix seconds
//	exp     8 bytes, unix seconds
//	peerLen 2 bytes, then the peer ID
//	taskLen 2 bytes, then the task ID (0 for peer credentials)
//
// Binary rather than JSON so that the longest IDs, whatever their bytes, fit
// in MaxTokenLen.
const (
	wireKindPeer  = 1
	wireKindTask  = 2
	wireFixedSize = 1 + 8 + 8 + 2 + 2
)

func encodeClaims(c Claims) []byte {
	b := make([]byte, 0, wireFixedSize+len(c.PeerID)+len(c.TaskID))
	k := byte(wireKindPeer)
	if c.Kind == KindTask {
		k = wireKindTask
	}
	b = append(b, k)
	b = binary.BigEndian.AppendUint64(b, uint64(c.IssuedAt.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.ExpiresAt.Unix()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.PeerID)))
	b = append(b, c.PeerID...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.TaskID)))
	return append(b, c.TaskID...)
}

func decodeClaims(b []byte) (Claims, bool) {
	if len(b) < wireFixedSize {
		return Claims{}, false
	}
	var c Claims
	switch b[0] {
	case wireKindPeer:
		c.Kind = KindPeer
	case wireKindTask:
		c.Kind = KindTask
	default:
		return Claims{}, false
	}
	c.IssuedAt = time.Unix(int64(binary.BigEndian.Uint64(b[1:])), 0)
	c.ExpiresAt = time.Unix(int64(binary.BigEndian.Uint64(b[9:])), 0)
	b = b[17:]
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < n+2 {
		return Claims{}, false
	}
	c.PeerID, b = string(b[:n]), b[n:]
	n = int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) != n {
		return Claims{}, false
	}
	c.TaskID = string(b)
	return c, true
}

var b64 = base64.RawURLEncoding.Strict()

// Issuer issues and verifies credentials. The supernode issues; peers use an
// Issuer holding only Key to verify task credentials offline. The zero TTL
// means DefaultTTL and a nil Now means time.Now.
//
// A credential is "<prefix>.<base64url(claims)>.<base64url(HMAC-SHA256)>",
// prefix "dfp1" (peer) or "dft1" (task), the MAC covering prefix and claims
// under the kind's own key.
type Issuer struct {
	Key Key
	Now func() time.Time
	TTL time.Duration
}

func (i Issuer) now() time.Time {
	if i.Now != nil {
		return i.Now()
	}
	return time.Now()
}

func validID(id string) bool {
	return id != "" && len(id) <= MaxIDLen && utf8.ValidString(id)
}

// IssuePeer issues a credential that speaks for peerID.
func (i Issuer) IssuePeer(peerID string) (string, error) {
	if !validID(peerID) {
		return "", fmt.Errorf("issue peer credential: %w", ErrBadID)
	}
	return i.issue(Claims{Kind: KindPeer, PeerID: peerID})
}

// IssueTask issues a credential that lets peerID fetch the pieces of taskID.
func (i Issuer) IssueTask(peerID, taskID string) (string, error) {
	if !validID(peerID) || !validID(taskID) {
		return "", fmt.Errorf("issue task credential: %w", ErrBadID)
	}
	return i.issue(Claims{Kind: KindTask, PeerID: peerID, TaskID: taskID})
}

func (i Issuer) issue(c Claims) (string, error) {
	if i.Key.IsZero() {
		return "", fmt.Errorf("issue %s credential: %w", c.Kind, ErrNoKey)
	}
	ttl := i.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	now := i.now()
	c.IssuedAt = now
	c.ExpiresAt = now.Add(ttl)
	payload := encodeClaims(c)
	prefix := prefixPeer
	if c.Kind == KindTask {
		prefix = prefixTask
	}
	signed := prefix + "." + b64.EncodeToString(payload)
	return signed + "." + b64.EncodeToString(i.Key.mac(c.Kind, signed)), nil
}

// Verify checks a credential of either kind: length, signature, then expiry.
// Errors wrap one of the Err* values and never contain the token.
func (i Issuer) Verify(token string) (Claims, error) {
	c, err := i.verify(token)
	if err != nil {
		return Claims{}, fmt.Errorf("verify credential: %w", err)
	}
	return c, nil
}

// VerifyPeer checks that token is a valid KindPeer credential for peerID.
func (i Issuer) VerifyPeer(token, peerID string) (Claims, error) {
	c, err := i.verify(token)
	switch {
	case err != nil:
	case c.Kind != KindPeer:
		err = fmt.Errorf("%w: want %s, got %s", ErrWrongKind, KindPeer, c.Kind)
	case c.PeerID != peerID:
		err = ErrWrongPeer
	}
	if err != nil {
		return Claims{}, fmt.Errorf("verify peer credential: %w", err)
	}
	return c, nil
}

// VerifyTask checks that token is a valid KindTask credential for taskID. The
// returned Claims name the peer it was issued to.
func (i Issuer) VerifyTask(token, taskID string) (Claims, error) {
	c, err := i.verify(token)
	switch {
	case err != nil:
	case c.Kind != KindTask:
		err = fmt.Errorf("%w: want %s, got %s", ErrWrongKind, KindTask, c.Kind)
	case c.TaskID != taskID:
		err = ErrWrongTask
	}
	if err != nil {
		return Claims{}, fmt.Errorf("verify task credential: %w", err)
	}
	return c, nil
}

func (i Issuer) verify(token string) (Claims, error) {
	if i.Key.IsZero() {
		return Claims{}, ErrNoKey
	}
	if len(token) > MaxTokenLen {
		return Claims{}, ErrTooLong
	}
	prefix, rest, ok := strings.Cut(token, ".")
	if !ok {
		return Claims{}, ErrMalformed
	}
	payloadB64, macB64, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(macB64, ".") {
		return Claims{}, ErrMalformed
	}
	var kind Kind
	switch prefix {
	case prefixPeer:
		kind = KindPeer
	case prefixTask:
		kind = KindTask
	default:
		return Claims{}, ErrMalformed
	}
	// The decoder skips CR and LF; insisting on the canonical encoding keeps
	// tokens unmalleable.
	mac, err := b64.DecodeString(macB64)
	if err != nil || len(mac) != sha256.Size || b64.EncodeToString(mac) != macB64 {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(mac, i.Key.mac(kind, token[:len(prefix)+1+len(payloadB64)])) {
		return Claims{}, ErrBadSignature
	}
	// Only authenticated bytes are decoded from here on.
	payload, err := b64.DecodeString(payloadB64)
	if err != nil || b64.EncodeToString(payload) != payloadB64 {
		return Claims{}, ErrMalformed
	}
	c, ok := decodeClaims(payload)
	if !ok || c.Kind != kind || !validID(c.PeerID) || (kind == KindTask) != (c.TaskID != "") || (c.TaskID != "" && !validID(c.TaskID)) {
		return Claims{}, ErrMalformed
	}
	now := i.now()
	if !now.Before(c.ExpiresAt) {
		return Claims{}, fmt.Errorf("%w at %s", ErrExpired, c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if c.IssuedAt.After(now.Add(maxClockSkew)) {
		return Claims{}, ErrNotYetValid
	}
	return c, nil
}
