package fusefs

import (
	"context"
	"sync"
)

// Content is what a file's bytes come from: a lazily downloaded task. Its
// ReadAt asks for missing pieces at top priority and blocks until they
// arrive or ctx ends.
type Content interface {
	Size() int64
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
	// Present is how many bytes are stored locally.
	Present() int64
	Complete() bool
	// DataPath is the local file holding the content at its offsets, for
	// passthrough reads once Complete (empty: no passthrough).
	DataPath() string
}

// Opener opens the content of a URL lazily; cmd/dfmount wires it to an
// embedded peer or to a dfdaemon.
type Opener func(ctx context.Context, url string) (Content, error)

// lazyContent opens a Content on first use; concurrent first uses share
// one open, and a failed open is retried by the next use.
type lazyContent struct {
	url  string
	open Opener

	mu sync.Mutex
	c  Content
}

func (l *lazyContent) get(ctx context.Context) (Content, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		return l.c, nil
	}
	c, err := l.open(ctx, l.url)
	if err != nil {
		return nil, err
	}
	l.c = c
	return c, nil
}

// peek returns the content if it was opened.
func (l *lazyContent) peek() Content {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c
}
