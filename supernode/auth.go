package supernode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/wire"
)

// credentialKeyFile, under the data dir, holds the supernode-private secret
// peer credentials are signed with. It is not derived from the cluster
// token, so a peer holding that token cannot mint another peer's credential.
const credentialKeyFile = "credential.key"

// auth holds what the supernode needs to authenticate callers. With on
// false (no cluster token) every check passes and nothing is issued.
type auth struct {
	on           bool
	cluster      trust.Secret
	admin        trust.Secret // admin token, or the cluster token
	notify       trust.Secret
	peers, tasks trust.Issuer
}

// newAuth loads (or creates) the peer credential key and derives the task
// credential key from the cluster token.
func newAuth(cfg Config) (*auth, error) {
	if cfg.ClusterToken.IsZero() {
		return &auth{}, nil
	}
	a := &auth{on: true, cluster: cfg.ClusterToken, admin: cfg.AdminToken, notify: cfg.NotificationsToken}
	if a.admin.IsZero() {
		a.admin = cfg.ClusterToken
	}
	tk, err := trust.DeriveKey(cfg.ClusterToken)
	if err != nil {
		return nil, fmt.Errorf("derive task credential key: %w", err)
	}
	secret, err := loadOrCreateKey(filepath.Join(cfg.DataDir, credentialKeyFile))
	if err != nil {
		return nil, err
	}
	pk, err := trust.DeriveKey(secret)
	if err != nil {
		return nil, fmt.Errorf("derive peer credential key: %w", err)
	}
	a.peers = trust.Issuer{Key: pk, TTL: cfg.CredentialTTL}
	a.tasks = trust.Issuer{Key: tk, TTL: cfg.CredentialTTL}
	return a, nil
}

// loadOrCreateKey reads the peer credential secret at path, creating it
// (32 random bytes, hex, mode 0600) on first start.
func loadOrCreateKey(path string) (trust.Secret, error) {
	s, err := trust.LoadSecretFile(path)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return trust.Secret{}, fmt.Errorf("load peer credential key: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return trust.Secret{}, fmt.Errorf("create peer credential key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return trust.Secret{}, fmt.Errorf("create peer credential key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadOrCreateKey(path) // created meanwhile by another process
	}
	if err != nil {
		return trust.Secret{}, fmt.Errorf("create peer credential key: %w", err)
	}
	_, werr := f.WriteString(hex.EncodeToString(b[:]) + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return trust.Secret{}, fmt.Errorf("write peer credential key: %w", werr)
	}
	return trust.LoadSecretFile(path)
}

// caller is who a peer call's bearer token says the caller is.
type caller struct {
	cluster bool         // the bearer is the cluster token itself
	claims  trust.Claims // else: a verified peer credential
}

type callerKey struct{}

// peerCall admits requests bearing the cluster token or a valid peer
// credential; the handler binds it to the body's peer with bindPeer.
func (a *auth) peerCall(h http.HandlerFunc) http.Handler {
	if !a.on {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := trust.BearerToken(r)
		if !ok {
			trust.Unauthorized(w)
			return
		}
		var c caller
		if a.cluster.Matches(tok) {
			c.cluster = true
		} else if cl, err := a.peers.Verify(tok); err == nil && cl.Kind == trust.KindPeer {
			c.claims = cl
		} else {
			trust.Unauthorized(w)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// secretCall admits requests bearing s.
func (a *auth) secretCall(s trust.Secret, h http.Handler) http.Handler {
	if !a.on {
		return h
	}
	return trust.RequireSecret(s)(h)
}

// bindPeer checks that the caller may speak for peerID: its own credential,
// or (claim true: register, announce) the cluster token for a peer ID not
// known yet. On success it sets the answer's PeerCredentialHeader when the
// caller needs a fresh credential (always when claim is true). On failure
// it has answered 401.
func (a *auth) bindPeer(w http.ResponseWriter, r *http.Request, peerID string, claim bool, known func(string) bool) bool {
	if !a.on {
		return true
	}
	c, _ := r.Context().Value(callerKey{}).(caller)
	switch {
	case c.cluster && claim && !known(peerID):
	case !c.cluster && c.claims.PeerID == peerID && c.claims.PeerID != "":
	default:
		trust.Unauthorized(w)
		return false
	}
	half := c.claims.IssuedAt.Add(c.claims.ExpiresAt.Sub(c.claims.IssuedAt) / 2)
	if claim || c.cluster || !time.Now().Before(half) {
		cred, err := a.peers.IssuePeer(peerID)
		if err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeBadRequest, "cannot issue a credential for this peer ID", 0)
			return false
		}
		w.Header().Set(wire.PeerCredentialHeader, cred)
	}
	return true
}

// taskCredential issues a task credential, or "" with authentication off.
func (a *auth) taskCredential(peerID, taskID string) string {
	if !a.on {
		return ""
	}
	c, err := a.tasks.IssueTask(peerID, taskID)
	if err != nil {
		return ""
	}
	return c
}
