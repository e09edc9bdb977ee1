package supernode

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/trust/egress"
	"github.com/damselfly-p2p/damselfly/wire"
)

// s3 tasks through the swarm.
//
// A peer that reads s3://BUCKET/KEY registers it with a presigned GET URL
// for that object version, signed with its own credentials (which never
// leave it). The supernode takes such a registration only when the URL
// names the very same bucket and key at a store endpoint the operator
// allowed (Config.S3Endpoints), and only once the store, asked through that
// URL (through the origin policy, like every fetch), answered with the
// ETag whose identity is the registered task ID: the identity is bucket,
// key and ETag (objstore.TaskID), never a signature, so every peer reading
// that object version shares one task. A presigned URL the store refuses
// gets 403 and no task credential: its peer is served nothing. A URL the
// store accepted is remembered (by its hash) for at most the revalidation
// interval, as private HTTP content is.
//
// The seed fetches the object through the newest presigned URL that passed
// this check, exactly as it fetches an HTTP origin (ranged GETs, piece
// digests). Presigned URLs are secrets: kept in memory only, never logged
// (the origin client logs the redacted form), stored with the task (its
// URL stays s3://BUCKET/KEY), shown in status or sent to peers.

// s3Gate holds the allowed endpoints and the presigned URLs of s3 tasks.
type s3Gate struct {
	endpoints []objstore.Endpoint
	ttl       time.Duration // how long a store's acceptance of a URL is trusted
	log       logrus.FieldLogger

	mu sync.Mutex
	// sources maps a task ID to the presigned URL the seed fetches with.
	sources map[string]s3Source
	// accepted maps taskID + "\x00" + sha256(presigned URL) to when the
	// store last accepted that URL.
	accepted map[string]time.Time
	// packs maps the task ID of a pack to its members (seedpack.go).
	packs map[string]*packSource
}

type s3Source struct {
	url     string // secret
	expires time.Time
}

// maxS3Entries bounds each map of the gate; beyond, stale entries go.
const maxS3Entries = 1 << 14

func newS3Gate(endpoints []string, revalidate time.Duration, log logrus.FieldLogger) (*s3Gate, error) {
	g := &s3Gate{ttl: revalidate, log: log, sources: map[string]s3Source{}, accepted: map[string]time.Time{},
		packs: map[string]*packSource{}}
	if g.ttl <= 0 {
		g.ttl = 30 * time.Second
	}
	for _, e := range endpoints {
		ep, err := objstore.ParseEndpoint(e)
		if err != nil {
			return nil, err
		}
		g.endpoints = append(g.endpoints, ep)
	}
	return g, nil
}

// url returns the presigned URL the seed fetches task id with.
func (g *s3Gate) url(id string) (string, bool) {
	if g == nil {
		return "", false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	src, ok := g.sources[id]
	return src.url, ok
}

// originURL is the URL the seed fetches st from: its presigned URL for an
// s3 task, its own URL otherwise.
func (s *seeder) originURL(st *seedTask) string {
	if u, ok := s.s3.url(st.id); ok && objstore.IsURL(st.url) {
		return u
	}
	return st.url
}

// s3Refusal is a registration of an s3 task the supernode refuses.
type s3Refusal struct {
	status int
	code   string
	msg    string
}

func (e *s3Refusal) Error() string { return e.msg }

// checkS3 checks an s3:// registration (see above) and returns its task ID;
// on success the seed may fetch the object with req.S3Presigned.
func (s *Supernode) checkS3(ctx context.Context, req *wire.RegisterRequest) (string, error) {
	g := s.s3
	u, err := objstore.ParseURL(req.URL)
	if err != nil {
		return "", &s3Refusal{http.StatusBadRequest, wire.CodeBadRequest, err.Error()}
	}
	if len(g.endpoints) == 0 {
		return "", &s3Refusal{http.StatusForbidden, wire.CodeForbidden,
			fmt.Sprintf("%s: this supernode does not fetch from object stores (no --s3-endpoint allows one); read it from the store directly", u)}
	}
	if len(req.S3Pack) > 0 {
		return s.checkS3Pack(ctx, req, u)
	}
	switch {
	case u.IsPrefix():
		return "", &s3Refusal{http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("%s: a prefix, not an object (and no pack members)", u)}
	case req.Digest != "" || len(req.Filters) > 0 || len(req.Header) > 0:
		return "", &s3Refusal{http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("%s: s3 tasks take no digest, filters or headers", u)}
	case req.S3Presigned == "":
		return "", &s3Refusal{http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("%s: no presigned URL (s3Presigned) for the seed", u)}
	case len(req.TaskID) != 64:
		return "", &s3Refusal{http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("%s: the task ID (from bucket, key and ETag) is required", u)}
	}
	now := time.Now()
	chk, err := objstore.CheckPresigned(req.S3Presigned, u, g.endpoints, now)
	if err != nil {
		s.log.WithFields(logrus.Fields{"url": u.String(), "peer": req.PeerID}).WithError(err).Warn("s3 registration refused")
		return "", &s3Refusal{http.StatusForbidden, wire.CodeForbidden, err.Error()}
	}
	sum := sha256.Sum256([]byte(req.S3Presigned))
	key := req.TaskID + "\x00" + hex.EncodeToString(sum[:])
	g.mu.Lock()
	at, ok := g.accepted[key]
	g.mu.Unlock()
	if ok && now.Sub(at) < g.ttl {
		g.setSource(req.TaskID, req.S3Presigned, chk.Expires, false)
		return req.TaskID, nil
	}
	// Ask the store through the URL itself (a GET of byte 0: a GET-only
	// signature makes it refuse a HEAD), through the origin policy like
	// every fetch.
	info, err := s.cfg.Source.ProbeRange(ctx, req.S3Presigned, nil)
	if err != nil {
		var se *origin.StatusError
		log := s.log.WithFields(logrus.Fields{"url": u.String(), "peer": req.PeerID, "accessKeyID": chk.AccessKeyID})
		if errors.As(err, &se) && (se.Code == http.StatusForbidden || se.Code == http.StatusUnauthorized) {
			log.WithField("status", se.Code).Info("s3: the store refused a registrant's presigned URL")
			return "", &s3Refusal{http.StatusForbidden, wire.CodeForbidden,
				fmt.Sprintf("%s: the store refused the presigned URL (%s): check the credentials", u, se.Status)}
		}
		if errors.As(err, &se) {
			return "", &s3Refusal{http.StatusBadGateway, wire.CodeOrigin, fmt.Sprintf("%s: the store answered %s", u, se.Status)}
		}
		log.WithField("reason", egress.Reason(err)).Warn("s3: presigned URL check failed")
		return "", &s3Refusal{http.StatusBadGateway, wire.CodeOrigin, fmt.Sprintf("%s: %v", u, egress.Conceal(err))}
	}
	oi := objstore.ObjectInfo{Bucket: u.Bucket, Key: u.Key, ETag: info.ETag, VersionID: chk.VersionID, Size: info.Length}
	switch {
	case info.ETag == "" && chk.VersionID == "":
		return "", &s3Refusal{http.StatusBadGateway, wire.CodeOrigin, fmt.Sprintf("%s: the store gave no ETag, so the content cannot be identified", u)}
	case objstore.TaskID(oi, req.Tag) != req.TaskID:
		return "", &s3Refusal{http.StatusConflict, wire.CodeBadRequest,
			fmt.Sprintf("%s: the store's ETag does not match the registered task ID (the object changed since it was looked up, or the ID is wrong)", u)}
	case info.Length < 0:
		return "", &s3Refusal{http.StatusBadGateway, wire.CodeOrigin, fmt.Sprintf("%s: the store sent no length", u)}
	}
	g.mu.Lock()
	if len(g.accepted) >= maxS3Entries {
		for k, t := range g.accepted {
			if now.Sub(t) >= g.ttl {
				delete(g.accepted, k)
			}
		}
	}
	g.accepted[key] = now
	g.mu.Unlock()
	g.setSource(req.TaskID, req.S3Presigned, chk.Expires, true)
	return req.TaskID, nil
}

// setSource makes url the one the seed fetches task id with when the store
// just accepted it (fresh), or when it outlives the one held.
func (g *s3Gate) setSource(id, url string, expires time.Time, fresh bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	held, ok := g.sources[id]
	if ok && !fresh && !expires.After(held.expires) {
		return
	}
	if len(g.sources) >= maxS3Entries {
		now := time.Now()
		for k, src := range g.sources {
			if !now.Before(src.expires) {
				delete(g.sources, k)
			}
		}
	}
	g.sources[id] = s3Source{url: url, expires: expires}
}

// registerID derives and checks a registration's task ID (s3 tasks through
// checkS3), writing the error answer itself when it fails.
func (s *Supernode) registerID(w http.ResponseWriter, r *http.Request, req *wire.RegisterRequest) (string, bool) {
	if !objstore.IsURL(req.URL) {
		if req.S3Presigned != "" || len(req.S3Pack) > 0 {
			writeError(w, http.StatusBadRequest, wire.CodeBadRequest, "s3Presigned and s3Pack are only for s3:// URLs", 0)
			return "", false
		}
		id, err := taskIDFor(req)
		if err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error(), 0)
			return "", false
		}
		return id, true
	}
	id, err := s.checkS3(r.Context(), req)
	if err != nil {
		var re *s3Refusal
		if errors.As(err, &re) {
			writeError(w, re.status, re.code, re.msg, 0)
		} else {
			writeError(w, http.StatusBadGateway, wire.CodeOrigin, err.Error(), 0)
		}
		return "", false
	}
	// The presigned URL is the seed's source; nothing else of the peer's
	// goes to the store.
	req.Header = nil
	return id, true
}
