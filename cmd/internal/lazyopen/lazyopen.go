// Package lazyopen owns how the FUSE-serving commands (dfmount,
// df-snapshotter) open content lazily: through a running dfdaemon when one
// answers on its socket, otherwise through an embedded peer. It holds no
// product logic.
package lazyopen

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/p2p/localapi"
)

// Config says where content comes from.
type Config struct {
	DaemonSock   string
	NoDaemon     bool
	DataDir      string
	Supernodes   []string
	UploadListen string
	AdvertiseIP  string
	// Prefetch, PrefetchLimit and ReadTimeout apply to every open.
	Prefetch      bool
	PrefetchLimit int64
	ReadTimeout   time.Duration
	Tag           string
	Filters       []string
	Log           *logrus.Logger
}

// Opener opens URLs lazily. Close it when done.
type Opener struct {
	cfg    Config
	client *localapi.Client
	peer   *p2p.Peer

	mu      sync.Mutex
	closers []func()
}

// New picks the daemon (if it answers) or starts an embedded peer.
func New(ctx context.Context, cfg Config) (*Opener, error) {
	o := &Opener{cfg: cfg}
	if c := localapi.NewClient(cfg.DaemonSock); !cfg.NoDaemon && c.Alive(ctx) {
		o.client = c
		cfg.Log.WithField("sock", cfg.DaemonSock).Info("reading through dfdaemon")
		return o, nil
	}
	peer, err := p2p.New(p2p.Config{DataDir: cfg.DataDir, Supernodes: cli.SplitList(cfg.Supernodes, ","),
		UploadListen: cfg.UploadListen, AdvertiseIP: cfg.AdvertiseIP, Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	o.peer = peer
	return o, nil
}

// ViaDaemon reports whether a dfdaemon serves the reads.
func (o *Opener) ViaDaemon() bool { return o.client != nil }

// Open opens url lazily with header (sent to the origin only). The content
// stays open until Close (or until the returned close function runs).
func (o *Opener) Open(ctx context.Context, url string, header http.Header) (fusefs.Content, func(), error) {
	var c fusefs.Content
	var closeFn func()
	if o.client != nil {
		rl, err := o.client.OpenLazy(ctx, localapi.LazyOpenRequest{URL: url, Header: header, Tag: o.cfg.Tag,
			Filters: o.cfg.Filters, Prefetch: o.cfg.Prefetch, PrefetchLimit: o.cfg.PrefetchLimit})
		if err != nil {
			return nil, nil, err
		}
		c, closeFn = rl, func() { rl.Close() }
	} else {
		l, err := o.peer.OpenLazy(ctx, p2p.Request{URL: url, Header: header, Tag: o.cfg.Tag, Filters: o.cfg.Filters},
			p2p.LazyOptions{Prefetch: o.cfg.Prefetch, PrefetchLimit: o.cfg.PrefetchLimit, ReadTimeout: o.cfg.ReadTimeout})
		if err != nil {
			return nil, nil, err
		}
		c, closeFn = l, func() { l.Close() }
	}
	var once sync.Once
	closer := func() { once.Do(closeFn) }
	o.mu.Lock()
	o.closers = append(o.closers, closer)
	o.mu.Unlock()
	return c, closer, nil
}

// Close closes every opened content and the embedded peer.
func (o *Opener) Close() {
	o.mu.Lock()
	cs := o.closers
	o.closers = nil
	o.mu.Unlock()
	for _, c := range cs {
		c()
	}
	if o.peer != nil {
		o.peer.Close()
	}
}
