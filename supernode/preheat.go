package supernode

// Preheat: fetch a file, an s3 object (s3preheat.go), or every blob of an
// image, into the seed's cache
// before anyone asks for it, so that the first pull is served from the
// supernode and not from the origin.
//
//	POST /api/v1/preheats                wire.PreheatRequest -> 202 wire.PreheatStatus
//	GET  /api/v1/preheats                -> [wire.PreheatStatus], newest first
//	GET  /api/v1/preheats/{id}           -> wire.PreheatStatus
//	POST /api/v1/registry/notifications  a registry's notification envelope
//	                                     (distribution's notifications.endpoints)
//	                                     -> 200 {"preheats": [id, ...]}
//
// An image preheat resolves a tag (an index or manifest list to the
// requested platform's manifest) and warms the config and every layer, as
// tasks keyed by digest: the same tasks the registry mirror's peers
// register. Pushed blobs and manifests announced by a registry's
// notifications are preheated as they arrive.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/registry"
	"github.com/damselfly-p2p/damselfly/wire"
)

// Limits of the preheater. Each origin (scheme://host:port) gets at most
// preheatPerOrigin of the preheatConcurrency slots, so that one origin
// that hangs cannot starve the others; unfinished preheats are bounded by
// Config.PreheatQueue (beyond, 429) and each runs for at most
// Config.PreheatTimeout.
const (
	DefaultPreheatQueue   = 256
	DefaultPreheatTimeout = 30 * time.Minute

	preheatConcurrency = 16   // blobs fetched from origins at once
	preheatPerOrigin   = 4    // of which from one origin
	preheatKeep        = 1000 // finished preheats remembered
	preheatKeepFor     = 24 * time.Hour
	preheatPoll        = 200 * time.Millisecond
	maxNotification    = 8 << 20 // bytes of one notification envelope
)

type preheater struct {
	s       *Supernode
	reg     *registry.Client
	sem     chan struct{}
	origins *originSlots
	log     logrus.FieldLogger
	queue   int           // unfinished preheats accepted at once
	timeout time.Duration // of one preheat

	mu     sync.Mutex
	jobs   map[string]*preheatJob
	active map[string]*preheatJob // dedupe key -> unfinished job
}

type preheatJob struct {
	id, key string
	req     wire.PreheatRequest

	mu      sync.Mutex
	status  wire.PreheatStatus
	targets []*preheatTarget
}

type preheatTarget struct {
	url, digest, taskID string
	length              int64
	state, err          string
}

// preheatRoutes sets up the preheater and registers its endpoints.
func (s *Supernode) preheatRoutes() {
	hc := &http.Client{Timeout: 2 * time.Minute, CheckRedirect: s.cfg.Egress.CheckRedirect,
		Transport: s.cfg.Egress.Transport(&http.Transport{
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: time.Minute,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
		})}
	queue, timeout := s.cfg.PreheatQueue, s.cfg.PreheatTimeout
	if queue <= 0 {
		queue = DefaultPreheatQueue
	}
	if timeout <= 0 {
		timeout = DefaultPreheatTimeout
	}
	s.preheats = &preheater{s: s, log: s.log, sem: make(chan struct{}, preheatConcurrency),
		origins: newOriginSlots(preheatPerOrigin), queue: queue, timeout: timeout,
		reg:  registry.NewClient(hc, s.log),
		jobs: map[string]*preheatJob{}, active: map[string]*preheatJob{}}
	a := s.auth
	s.mux.Handle("POST /api/v1/preheats", a.secretCall(a.admin, http.HandlerFunc(s.preheats.handleCreate)))
	s.mux.Handle("GET /api/v1/preheats", a.secretCall(a.admin, http.HandlerFunc(s.preheats.handleList)))
	s.mux.Handle("GET /api/v1/preheats/{id}", a.secretCall(a.admin, http.HandlerFunc(s.preheats.handleGet)))
	s.mux.Handle("POST /api/v1/registry/notifications", a.secretCall(a.notify, http.HandlerFunc(s.preheats.handleNotification)))
}

// normalizePreheat checks a request and fills in its type.
func normalizePreheat(req *wire.PreheatRequest) error {
	if objstore.IsURL(req.URL) {
		return normalizeS3Preheat(req) // s3preheat.go
	}
	if req.S3Presigned != "" || req.TaskID != "" {
		return errors.New("s3Presigned and taskID are only for s3:// URLs")
	}
	if _, err := manifest.ParseURL(req.URL); err != nil {
		return err
	}
	isManifest := registry.IsManifestURL(req.URL)
	switch req.Type {
	case "":
		req.Type = wire.PreheatFile
		if isManifest {
			req.Type = wire.PreheatImage
		}
	case wire.PreheatImage:
		if !isManifest {
			return fmt.Errorf("image preheat needs a manifest URL (scheme://host/v2/NAME/manifests/TAG), got %s", manifest.RedactURL(req.URL))
		}
	case wire.PreheatFile:
	default:
		return fmt.Errorf("preheat type %q: want %q or %q", req.Type, wire.PreheatImage, wire.PreheatFile)
	}
	if req.Type == wire.PreheatImage {
		if req.Digest != "" {
			return errors.New("digest is for file preheats; an image's blobs carry their own")
		}
		if _, err := registry.ParsePlatform(req.Platform); err != nil {
			return err
		}
		if req.Platform == "" {
			req.Platform = "linux/amd64"
		}
	} else {
		req.Platform = ""
		if req.Digest != "" {
			if _, err := parseDigest(req.Digest); err != nil {
				return err
			}
		} else if _, d, ok := registry.ParseBlobPath(urlPath(req.URL)); ok {
			req.Digest = d.String()
		}
	}
	return nil
}

func urlPath(raw string) string {
	u, err := manifest.ParseURL(raw)
	if err != nil {
		return ""
	}
	return u.Path
}

// errPreheatQueueFull refuses a preheat while the queue is full.
var errPreheatQueueFull = errors.New("too many unfinished preheats; try again later")

// start creates a job, or returns the unfinished one for the same thing.
// It fails with errPreheatQueueFull when the queue is full.
func (p *preheater) start(req wire.PreheatRequest, trigger string) (*preheatJob, bool, error) {
	key := strings.Join([]string{req.Type, req.URL, req.Platform, req.Digest, req.Tag, req.TaskID}, "\x00")
	p.mu.Lock()
	defer p.mu.Unlock()
	if j := p.active[key]; j != nil {
		return j, false, nil
	}
	if len(p.active) >= p.queue {
		return nil, false, errPreheatQueueFull
	}
	p.prune()
	b := make([]byte, 8)
	rand.Read(b)
	j := &preheatJob{id: hex.EncodeToString(b), key: key, req: req, status: wire.PreheatStatus{
		Type: req.Type, URL: showURL(req.URL), Platform: req.Platform, Trigger: trigger,
		State: wire.PreheatPending, CreatedAt: time.Now()}}
	j.status.ID = j.id
	p.jobs[j.id] = j
	p.active[key] = j
	go p.run(j)
	return j, true, nil
}

// prune forgets old finished jobs. Caller holds p.mu.
func (p *preheater) prune() {
	var done []*preheatJob
	for _, j := range p.jobs {
		j.mu.Lock()
		fin := j.status.FinishedAt
		j.mu.Unlock()
		if fin != nil {
			if time.Since(*fin) > preheatKeepFor {
				delete(p.jobs, j.id)
				continue
			}
			done = append(done, j)
		}
	}
	if len(done) < preheatKeep {
		return
	}
	sort.Slice(done, func(a, b int) bool { return done[a].status.CreatedAt.Before(done[b].status.CreatedAt) })
	for _, j := range done[:len(done)-preheatKeep+1] {
		delete(p.jobs, j.id)
	}
}

func (p *preheater) run(j *preheatJob) {
	ctx, cancel := context.WithTimeout(p.s.ctx, p.timeout)
	defer cancel()
	start := time.Now()
	log := p.log.WithFields(logrus.Fields{"preheat": j.id, "type": j.req.Type, "url": showURL(j.req.URL),
		"trigger": j.status.Trigger})
	j.setState(wire.PreheatRunning, "")
	log.Info("preheat: started")
	err := p.execute(ctx, j, log)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && p.s.ctx.Err() == nil {
		err = fmt.Errorf("preheat timed out after %s: %w", p.timeout, err)
	}
	p.mu.Lock()
	delete(p.active, j.key)
	p.mu.Unlock()
	st := j.snapshot(p.s)
	fields := logrus.Fields{"blobs": len(st.Blobs), "bytes": st.Length, "took": time.Since(start).Round(time.Millisecond)}
	if err != nil {
		j.setState(wire.PreheatFailed, err.Error())
		log.WithFields(fields).WithError(err).Error("preheat: failed")
		return
	}
	j.setState(wire.PreheatSuccess, "")
	log.WithFields(fields).Info("preheat: done; content is in the supernode cache")
}

func (p *preheater) execute(ctx context.Context, j *preheatJob, log logrus.FieldLogger) error {
	req := j.req
	header := req.Headers.Clone()
	var targets []*preheatTarget
	switch req.Type {
	case wire.PreheatImage:
		ref, err := registry.ParseManifestURL(req.URL)
		if err != nil {
			return err
		}
		plat, _ := registry.ParsePlatform(req.Platform)
		im, err := p.reg.Resolve(ctx, ref, header, plat)
		if err != nil {
			return fmt.Errorf("resolve image: %w", err)
		}
		if im.Authorization != "" {
			if header == nil {
				header = http.Header{}
			}
			header.Set("Authorization", im.Authorization)
		}
		for _, d := range im.Blobs() {
			targets = append(targets, &preheatTarget{url: ref.BlobURL(d.Digest.String()), digest: d.Digest.String(),
				taskID: manifest.DigestTaskID(d.Digest), length: d.Size, state: wire.PreheatPending})
		}
		log.WithFields(logrus.Fields{"manifest": im.Manifest.Digest, "blobs": len(targets)}).Info("preheat: image resolved")
	default:
		t := &preheatTarget{url: req.URL, digest: req.Digest, length: -1, state: wire.PreheatPending}
		if objstore.IsURL(req.URL) {
			// Checked against the store when the preheat was accepted
			// (s3preheat.go); the seed fetches it with the presigned URL
			// that passed.
			t.taskID = req.TaskID
		} else if req.Digest != "" {
			d, _ := parseDigest(req.Digest)
			t.taskID = manifest.DigestTaskID(d)
		} else {
			id, err := manifest.TaskID(req.URL, req.Tag, req.Filters)
			if err != nil {
				return err
			}
			t.taskID = id
		}
		targets = append(targets, t)
	}
	j.mu.Lock()
	j.targets = targets
	j.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(targets))
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// An origin's own slot first, so that a hanging origin holds
			// none of the shared ones beyond its share.
			host := originKey(t.url)
			if err := p.origins.acquire(ctx, host); err != nil {
				errs[i] = err
				j.setTarget(t, wire.PreheatFailed, err.Error())
				return
			}
			defer p.origins.release(host)
			select {
			case p.sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-p.sem }()
			j.setTarget(t, wire.PreheatRunning, "")
			warm := p.warm
			if req.Type == wire.PreheatImage {
				warm = p.warmAtOwner // each blob to its owner (cluster.go)
			}
			if err := warm(ctx, t, header); err != nil {
				errs[i] = fmt.Errorf("%s: %w", showURL(t.url), err)
				j.setTarget(t, wire.PreheatFailed, err.Error())
				return
			}
			j.setTarget(t, wire.PreheatSuccess, "")
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// warm makes the seed hold the whole task, starting it if needed.
func (p *preheater) warm(ctx context.Context, t *preheatTarget, header http.Header) error {
	st, err := p.s.seeds.ensure(ctx, t.taskID, t.url, header, t.digest, false)
	for errors.Is(err, errSeedBusy) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for room in the seed: %w", err)
		case <-time.After(time.Second):
		}
		st, err = p.s.seeds.ensure(ctx, t.taskID, t.url, header, t.digest, false)
	}
	if err != nil {
		return err
	}
	st.unpace() // a preheat wants the whole content here (seedpace.go)
	select {
	case <-st.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	tick := time.NewTicker(preheatPoll)
	defer tick.Stop()
	for {
		state, _, err := st.snapshot()
		switch state {
		case stateDone:
			return nil
		case stateFailed:
			return err
		case stateOnDemand:
			// Partial after a failover (vouch.go): fetch the rest.
			if err := p.s.seeds.fetchVouched(ctx, st); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (j *preheatJob) setState(state, errMsg string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.status.State, j.status.Error = state, errMsg
	if state == wire.PreheatSuccess || state == wire.PreheatFailed {
		now := time.Now()
		j.status.FinishedAt = &now
	}
}

func (j *preheatJob) setTarget(t *preheatTarget, state, errMsg string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	t.state, t.err = state, errMsg
}

// snapshot renders the job with live byte counts from the seed.
func (j *preheatJob) snapshot(s *Supernode) wire.PreheatStatus {
	j.mu.Lock()
	st := j.status
	targets := make([]preheatTarget, len(j.targets))
	for i, t := range j.targets {
		targets[i] = *t
	}
	j.mu.Unlock()
	st.Blobs = make([]wire.PreheatBlob, 0, len(targets))
	st.Length, st.Present = 0, 0
	for _, t := range targets {
		b := wire.PreheatBlob{URL: showURL(t.url), Digest: t.digest, TaskID: t.taskID, State: t.state,
			Length: t.length, Error: t.err}
		if seed := s.seeds.get(t.taskID); seed != nil {
			if _, task, _ := seed.snapshot(); task != nil {
				b.Length, b.Present = task.Meta().Length, task.BytesPresent()
			}
		} else if t.state == wire.PreheatSuccess && t.length > 0 {
			b.Present = t.length // warmed on its owner (cluster.go)
		}
		if b.Length > 0 {
			st.Length += b.Length
		}
		st.Present += b.Present
		st.Blobs = append(st.Blobs, b)
	}
	return st
}

func (p *preheater) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req wire.PreheatRequest
	if !decode(w, r, &req) {
		return
	}
	if err := normalizePreheat(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error(), 0)
		return
	}
	if req.S3Presigned != "" {
		if err := p.s.admitS3Preheat(r.Context(), &req); err != nil {
			var re *s3Refusal
			errors.As(err, &re)
			writeError(w, re.status, re.code, re.msg, 0)
			return
		}
		// The seed holds it now; the job has no use for the secret.
		req.S3Presigned = ""
	}
	j, created, err := p.start(req, "api")
	if err != nil {
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusTooManyRequests, wire.CodeRateLimited, err.Error(), 0)
		return
	}
	st := j.snapshot(p.s)
	w.Header().Set("Location", "/api/v1/preheats/"+j.id)
	w.Header().Set("Content-Type", "application/json")
	if created {
		w.WriteHeader(http.StatusAccepted)
	}
	json.NewEncoder(w).Encode(&st)
}

func (p *preheater) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, p.list())
}

// list returns every preheat's status, newest first.
func (p *preheater) list() []wire.PreheatStatus {
	p.mu.Lock()
	jobs := make([]*preheatJob, 0, len(p.jobs))
	for _, j := range p.jobs {
		jobs = append(jobs, j)
	}
	p.mu.Unlock()
	out := make([]wire.PreheatStatus, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, j.snapshot(p.s))
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreatedAt.After(out[b].CreatedAt) })
	return out
}

func (p *preheater) handleGet(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	j := p.jobs[r.PathValue("id")]
	p.mu.Unlock()
	if j == nil {
		writeError(w, http.StatusNotFound, "unknown_preheat", "no such preheat (finished ones are kept for a day)", 0)
		return
	}
	st := j.snapshot(p.s)
	writeJSON(w, &st)
}

// notificationEnvelope is distribution's notification body.
type notificationEnvelope struct {
	Events []notificationEvent `json:"events"`
}

type notificationEvent struct {
	ID     string `json:"id"`
	Action string `json:"action"`
	Target struct {
		MediaType  string `json:"mediaType"`
		Digest     string `json:"digest"`
		Size       int64  `json:"size"`
		Repository string `json:"repository"`
		URL        string `json:"url"`
		Tag        string `json:"tag"`
	} `json:"target"`
}

// handleNotification preheats what a registry says was pushed: blobs as
// files keyed by their digest, manifests as images. Pulls and deletes are
// ignored. It answers at once (registries block their queue on slow
// endpoints); the preheats run in the background.
func (p *preheater) handleNotification(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxNotification+1))
	if err != nil || len(body) > maxNotification {
		writeError(w, http.StatusBadRequest, "bad_request", "notification unreadable or too large", 0)
		return
	}
	var env notificationEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid notification JSON: "+err.Error(), 0)
		return
	}
	ids := []string{}
	seen := map[string]bool{}
	ignored := 0
	for _, ev := range env.Events {
		if (ev.Action != "push" && ev.Action != "mount") || ev.Target.URL == "" {
			ignored++
			continue
		}
		req := wire.PreheatRequest{URL: ev.Target.URL}
		if registry.IsManifestMediaType(ev.Target.MediaType) || registry.IsManifestURL(ev.Target.URL) {
			req.Type = wire.PreheatImage
		} else {
			req.Type, req.Digest = wire.PreheatFile, ev.Target.Digest
		}
		if err := normalizePreheat(&req); err != nil {
			p.log.WithError(err).WithFields(logrus.Fields{"event": ev.ID, "url": manifest.RedactURL(ev.Target.URL)}).
				Warn("preheat: ignoring a registry event")
			continue
		}
		if seen[req.URL] {
			continue
		}
		seen[req.URL] = true
		j, _, err := p.start(req, "registry")
		if err != nil {
			p.log.WithError(err).WithFields(logrus.Fields{"event": ev.ID, "url": manifest.RedactURL(ev.Target.URL)}).
				Warn("preheat: dropping a registry event")
			continue
		}
		ids = append(ids, j.id)
	}
	if len(ids) > 0 {
		p.log.WithFields(logrus.Fields{"events": len(env.Events), "preheats": len(ids), "ignored": ignored}).
			Info("preheat: registry notification")
	}
	writeJSON(w, map[string][]string{"preheats": ids})
}

// originKey names the origin of rawURL for per-origin limits.
func originKey(rawURL string) string {
	if u, err := objstore.ParseURL(rawURL); err == nil {
		return "s3://" + u.Bucket
	}
	u, err := manifest.ParseURL(rawURL)
	if err != nil {
		return rawURL
	}
	return u.Scheme + "://" + u.Host
}

// originSlots bounds concurrent work per origin. Only origins with work
// in progress have an entry.
type originSlots struct {
	per  int
	mu   sync.Mutex
	busy map[string]int
	free chan struct{} // closed (and replaced) at every release
}

func newOriginSlots(per int) *originSlots {
	return &originSlots{per: per, busy: map[string]int{}, free: make(chan struct{})}
}

// acquire takes one of key's slots, waiting for one until ctx is done.
func (o *originSlots) acquire(ctx context.Context, key string) error {
	for {
		o.mu.Lock()
		if o.busy[key] < o.per {
			o.busy[key]++
			o.mu.Unlock()
			return nil
		}
		ch := o.free
		o.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for a slot of origin %s: %w", manifest.RedactURL(key), ctx.Err())
		}
	}
}

func (o *originSlots) release(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.busy[key]--; o.busy[key] <= 0 {
		delete(o.busy, key)
	}
	close(o.free)
	o.free = make(chan struct{})
}
