package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// Env is what scenarios share: the product binaries, where temporary files
// go, where progress is logged, and the scopes whose processes and
// directories are still alive (so that an interrupted run can tear them all
// down). Its methods are safe for concurrent use.
type Env struct {
	// BinDir holds the supernode, dfdaemon and dfget binaries.
	BinDir string
	// Root is where scopes make their temporary directories ("" means
	// os.TempDir()); outputs of the single-client scenario go there too, so
	// it should be on the disk being measured.
	Root string
	// Log receives progress lines (stderr in the CLI).
	Log io.Writer
	// Keep leaves temporary directories in place for inspection.
	Keep bool

	mu     sync.Mutex
	scopes map[*testenv.ProgramTB]struct{}
	closed bool
}

// Logf writes a timestamped progress line to e.Log.
func (e *Env) Logf(format string, args ...any) {
	if e.Log == nil {
		return
	}
	fmt.Fprintf(e.Log, "%s dfbench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// ErrClosed is returned by Scope after CloseAll.
var ErrClosed = errors.New("bench: environment closed")

// Scope returns a fresh TB whose processes, servers and directories live
// until the returned close function runs (or CloseAll). Scenarios use one
// scope per measurement so that nothing from one measurement disturbs the
// next.
func (e *Env) Scope() (*testenv.ProgramTB, func(), error) {
	tb, closeTB := testenv.NewProgramTB(e.Root)
	tb.Keep = e.Keep
	if e.Log != nil {
		tb.Logger.SetOutput(e.Log)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		closeTB()
		return nil, nil, ErrClosed
	}
	if e.scopes == nil {
		e.scopes = map[*testenv.ProgramTB]struct{}{}
	}
	e.scopes[tb] = struct{}{}
	e.mu.Unlock()
	var once sync.Once
	return tb, func() {
		once.Do(func() {
			closeTB()
			e.mu.Lock()
			delete(e.scopes, tb)
			e.mu.Unlock()
		})
	}, nil
}

// CloseAll tears down every live scope (killing its processes and removing
// its directories) and makes later Scope calls fail. It is for interrupts
// and deadlines; it may run while a scenario is still using its scope.
func (e *Env) CloseAll() {
	e.mu.Lock()
	e.closed = true
	var tbs []*testenv.ProgramTB
	for tb := range e.scopes {
		tbs = append(tbs, tb)
	}
	e.mu.Unlock()
	for _, tb := range tbs {
		tb.Close()
	}
}

// Live reports how many scopes are open.
func (e *Env) Live() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.scopes)
}

// guard runs f, turning a testenv Fatalf (a panic with testenv.FatalError)
// into an error; other panics propagate.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if fe, ok := r.(testenv.FatalError); ok {
				err = fe
				return
			}
			panic(r)
		}
	}()
	return f()
}

// DfgetHasUploadLimit reports whether binDir's dfget accepts --upload-limit
// (a cap on the embedded peer's uploads), by reading its --help.
func DfgetHasUploadLimit(ctx context.Context, binDir string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binDir+string(os.PathSeparator)+"dfget", "--help").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("dfget --help: %w: %s", err, out)
	}
	return strings.Contains(string(out), "--upload-limit"), nil
}

// sleepCtx sleeps for d or until ctx ends, and reports whether it slept the
// whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
