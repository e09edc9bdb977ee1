package fusefs

import (
	"syscall"
	"time"
)

// Observer learns what a mount's reads of file content do, for metrics.
// Its methods are called concurrently from FUSE handlers and must be quick.
type Observer interface {
	// Read is called once per read of file content: how long it took, the
	// bytes it returned, and its errno (0 on success; EIO when the bytes
	// could not be had; EINTR when the reader gave up).
	Read(d time.Duration, n int, errno syscall.Errno)
}

// Observe makes o see every read of r's files. Call it before Mount; nil
// (the default) observes nothing.
func (r *Root) Observe(o Observer) { r.observer = o }

// observeRead reports a read that started at start to o, if any.
func observeRead(o Observer, start time.Time, n int, errno syscall.Errno) {
	if o != nil {
		o.Read(time.Since(start), n, errno)
	}
}
