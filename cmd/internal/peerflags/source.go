package peerflags

import (
	"context"
	"fmt"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/p2p/localapi"
)

// Source is where a client command's content comes from: the host's
// dfdaemon, or a peer embedded in the command. Close it when done.
type Source struct {
	client *localapi.Client
	sock   string
	peer   *p2p.Peer

	mu      sync.Mutex
	closers []func()
}

// Open uses the dfdaemon on o.DaemonSock if it answers (and not
// o.NoDaemon), otherwise starts an embedded peer from o.
func (o *Options) Open(ctx context.Context, log *logrus.Logger) (*Source, error) {
	if c := localapi.NewClient(o.DaemonSock); !o.NoDaemon && c.Alive(ctx) {
		log.WithField("sock", o.DaemonSock).Info("reading through dfdaemon")
		return &Source{client: c, sock: o.DaemonSock}, nil
	}
	if !o.NoDaemon && o.fs != nil && o.fs.Changed("daemon-sock") {
		log.Warnf("no dfdaemon answers on %s; using an embedded peer", o.DaemonSock)
	}
	peer, err := o.NewPeer(log)
	if err != nil {
		return nil, fmt.Errorf("start an embedded peer: %w", err)
	}
	return &Source{peer: peer}, nil
}

// ViaDaemon reports whether the dfdaemon serves this command.
func (s *Source) ViaDaemon() bool { return s.client != nil }

// Peer is the embedded peer, nil when the dfdaemon serves.
func (s *Source) Peer() *p2p.Peer { return s.peer }

// String says which it is, for reports.
func (s *Source) String() string {
	if s.client != nil {
		return "dfdaemon at " + s.sock
	}
	return "embedded peer"
}

// Download downloads req to req.Output. Through the dfdaemon, req.Progress
// is called as the daemon reports progress, and req.MoveOutput is ignored.
func (s *Source) Download(ctx context.Context, req p2p.Request) (*p2p.Result, error) {
	if s.client == nil {
		return s.peer.Download(ctx, req)
	}
	return s.client.Download(ctx, localapi.DownloadRequest{URL: req.URL, Header: req.Header, Tag: req.Tag,
		Filters: req.Filters, Digest: req.Digest, MD5: req.MD5, Output: req.Output, Limit: req.Limit,
		NoSource: req.NoSource}, req.Progress)
}

// Content is a lazily opened task: it has the method set of fusefs.Content,
// which this package does not import.
type Content interface {
	Size() int64
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
	Present() int64
	Complete() bool
	DataPath() string
}

// OpenLazy opens req's task for random-access reads before it is
// downloaded (req.Header goes to the origin only). The content stays open
// until Close, or until the returned close function runs.
func (s *Source) OpenLazy(ctx context.Context, req p2p.Request, opts p2p.LazyOptions) (Content, func(), error) {
	var c Content
	var closeFn func()
	if s.client != nil {
		rl, err := s.client.OpenLazy(ctx, localapi.LazyOpenRequest{URL: req.URL, Header: req.Header, Tag: req.Tag,
			Filters: req.Filters, Prefetch: opts.Prefetch, PrefetchLimit: opts.PrefetchLimit, ReadAheadAfter: opts.ReadAheadAfter})
		if err != nil {
			return nil, nil, err
		}
		c, closeFn = rl, func() { rl.Close() }
	} else {
		l, err := s.peer.OpenLazy(ctx, req, opts)
		if err != nil {
			return nil, nil, err
		}
		c, closeFn = l, func() { l.Close() }
	}
	closer := sync.OnceFunc(closeFn)
	s.mu.Lock()
	s.closers = append(s.closers, closer)
	s.mu.Unlock()
	return c, closer, nil
}

// Close closes every lazily opened content, then the embedded peer.
func (s *Source) Close() {
	s.mu.Lock()
	cs := s.closers
	s.closers = nil
	s.mu.Unlock()
	for _, c := range cs {
		c()
	}
	if s.peer != nil {
		s.peer.Close()
	}
}
