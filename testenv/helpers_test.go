package testenv

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// fakeTB records what testenv does with a TB, for tests of failure paths.
// Its cleanups run at close (last first); Fatalf panics with fatalPanic.
type fakeTB struct {
	t        *testing.T
	mu       sync.Mutex
	failed   bool
	logs     []string
	cleanups []func()
}

type fatalPanic string

func newFakeTB(t *testing.T) *fakeTB {
	f := &fakeTB{t: t}
	t.Cleanup(f.close)
	return f
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failed = true
	f.mu.Unlock()
	panic(fatalPanic(fmt.Sprintf(format, args...)))
}
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}
func (f *fakeTB) TempDir() string { return f.t.TempDir() }
func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}
func (f *fakeTB) setFailed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
}
func (f *fakeTB) close() {
	for {
		f.mu.Lock()
		n := len(f.cleanups)
		if n == 0 {
			f.mu.Unlock()
			return
		}
		fn := f.cleanups[n-1]
		f.cleanups = f.cleanups[:n-1]
		f.mu.Unlock()
		fn()
	}
}
func (f *fakeTB) allLogs() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.logs, "\n")
}

// expectFatal runs fn and returns the Fatalf message it raised, failing the
// test if it did not.
func expectFatal(t *testing.T, fn func()) (msg string) {
	t.Helper()
	defer func() {
		r := recover()
		p, ok := r.(fatalPanic)
		if !ok {
			if r != nil {
				panic(r)
			}
			t.Fatal("expected a Fatalf")
		}
		msg = string(p)
	}()
	fn()
	return ""
}
