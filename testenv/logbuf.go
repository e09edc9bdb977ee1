package testenv

import (
	"bytes"
	"io"
	"sync"

	"github.com/sirupsen/logrus"
)

// LogBuffer collects log output from several goroutines, for tests that
// check what was (or was not) logged.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// QuietLogger is a logger that discards everything, for tests whose
// components would otherwise log to the test output.
func QuietLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
