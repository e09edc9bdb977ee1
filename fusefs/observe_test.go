package fusefs

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recorder is an Observer that keeps what it saw.
type recorder struct {
	mu     sync.Mutex
	reads  int
	bytes  int
	errnos map[syscall.Errno]int
}

func (r *recorder) Read(d time.Duration, n int, errno syscall.Errno) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errnos == nil {
		r.errnos = map[syscall.Errno]int{}
	}
	r.reads++
	r.bytes += n
	r.errnos[errno]++
}

func (r *recorder) snapshot() (reads, bytes int, errnos map[syscall.Errno]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[syscall.Errno]int{}
	for k, v := range r.errnos {
		out[k] = v
	}
	return r.reads, r.bytes, out
}

// TestObserverSeesEveryRead: each read reports once, with the bytes it
// returned and its errno, whatever way it ends.
func TestObserverSeesEveryRead(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		data      FileData
		size      int64
		ctx       context.Context
		wantBytes int
		wantErrno syscall.Errno
	}{
		{"served", &memData{data: []byte("0123456789")}, 10, context.Background(), 4, 0},
		{"past the end", &memData{data: []byte("0123456789")}, 10, context.Background(), 0, 0},
		{"timed out", &memData{data: make([]byte, 10), block: true}, 10, context.Background(), 0, syscall.EIO},
		{"interrupted", &memData{data: make([]byte, 10), block: true}, 10, cancelled, 0, syscall.EINTR},
		{"panicked", panicData{}, 10, context.Background(), 0, syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			f := &fileNode{entry: Entry{Path: "p", Size: tt.size, Data: tt.data}, timeout: 50 * time.Millisecond, observer: rec}
			off := int64(0)
			if tt.name == "past the end" {
				off = tt.size
			}
			_, errno := f.Read(tt.ctx, nil, make([]byte, 4), off)
			if errno != tt.wantErrno {
				t.Fatalf("errno = %v, want %v", errno, tt.wantErrno)
			}
			reads, bytes, errnos := rec.snapshot()
			if reads != 1 || bytes != tt.wantBytes || errnos[tt.wantErrno] != 1 {
				t.Fatalf("observer saw %d reads, %d bytes, errnos %v; want 1 read, %d bytes, errno %v", reads, bytes, errnos, tt.wantBytes, tt.wantErrno)
			}
		})
	}
}
