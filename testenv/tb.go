package testenv

import (
	"fmt"
	"log"
	"os"
	"sync"
)

// TB is the part of testing.TB testenv needs; *testing.T and *testing.B
// satisfy it, and ProgramTB adapts a plain program.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

// FatalError is the value ProgramTB.Fatalf panics with.
type FatalError struct{ Msg string }

// Error returns the message given to Fatalf.
func (e FatalError) Error() string { return e.Msg }

// ProgramTB is a TB for a program that is not a test, such as the benchmark
// CLI. Logf writes to its Logger, Fatalf logs, marks it failed and panics with
// a FatalError, Cleanup functions run in reverse order at Close, and TempDir
// returns a new directory under the root given to NewProgramTB, removed at
// Close unless Keep is set. It is safe for concurrent use.
type ProgramTB struct {
	// Logger receives Logf and Fatalf output; NewProgramTB sets it to stderr.
	Logger *log.Logger
	// Keep, when set before Close (not concurrently with it), leaves the
	// directories made by TempDir in place.
	Keep bool

	root     string
	mu       sync.Mutex
	failed   bool
	cleanups []func()
	closed   bool
}

var _ TB = (*ProgramTB)(nil)

// NewProgramTB returns a TB for a non-test program and the function that
// closes it (the same as its Close method): defer it so that the processes
// and servers started through the TB are torn down even when Fatalf panics.
// Directories from TempDir are made under root; an empty root means
// os.TempDir().
func NewProgramTB(root string) (*ProgramTB, func()) {
	if root == "" {
		root = os.TempDir()
	}
	p := &ProgramTB{Logger: log.New(os.Stderr, "testenv: ", log.LstdFlags|log.Lmicroseconds), root: root}
	return p, p.Close
}

// Helper does nothing.
func (p *ProgramTB) Helper() {}

// Logf logs a formatted line.
func (p *ProgramTB) Logf(format string, args ...any) {
	p.Logger.Output(2, fmt.Sprintf(format, args...))
}

// Fatalf logs a formatted line, marks the TB failed and panics with a
// FatalError.
func (p *ProgramTB) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.Logger.Output(2, "FATAL: "+msg)
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	panic(FatalError{Msg: msg})
}

// Fail marks the TB failed, so that Cleanup functions print process logs.
func (p *ProgramTB) Fail() {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
}

// Failed reports whether Fatalf or Fail was called.
func (p *ProgramTB) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Cleanup registers f to run at Close, after the functions registered later.
// After Close it runs f at once.
func (p *ProgramTB) Cleanup(f func()) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.runCleanup(f)
		return
	}
	p.cleanups = append(p.cleanups, f)
	p.mu.Unlock()
}

// TempDir returns a new directory under the root, removed at Close (in
// Cleanup order) unless Keep is set. It calls Fatalf if it cannot make one.
func (p *ProgramTB) TempDir() string {
	if err := os.MkdirAll(p.root, 0o755); err != nil {
		p.Fatalf("testenv: TempDir: %v", err)
	}
	dir, err := os.MkdirTemp(p.root, "testenv-")
	if err != nil {
		p.Fatalf("testenv: TempDir: %v", err)
	}
	p.Cleanup(func() {
		if p.Keep {
			p.Logf("keeping %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			p.Logf("TempDir cleanup: %v", err)
		}
	})
	return dir
}

// Close runs the registered Cleanup functions, last registered first,
// including any registered while it runs. A panicking cleanup is logged,
// marks the TB failed, and does not stop the others. Close is idempotent.
func (p *ProgramTB) Close() {
	for {
		p.mu.Lock()
		p.closed = true
		n := len(p.cleanups)
		if n == 0 {
			p.mu.Unlock()
			return
		}
		f := p.cleanups[n-1]
		p.cleanups = p.cleanups[:n-1]
		p.mu.Unlock()
		p.runCleanup(f)
	}
}

func (p *ProgramTB) runCleanup(f func()) {
	defer func() {
		if r := recover(); r != nil {
			p.mu.Lock()
			p.failed = true
			p.mu.Unlock()
			p.Logger.Printf("cleanup panicked: %v", r)
		}
	}()
	f()
}
