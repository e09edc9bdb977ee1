// Package cli owns what the command-line mains share: logging set-up,
// flag value types users type (rates, sizes, lenient durations) and signal
// handling. It holds no product logic.
package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
)

// SetupLog configures logrus for a process: text to stderr with timestamps
// and the given level.
func SetupLog(level string) (*logrus.Logger, error) {
	lv, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	l := logrus.StandardLogger()
	l.SetOutput(os.Stderr)
	l.SetLevel(lv)
	l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})
	return l, nil
}

// SignalContext is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Rate is a pflag.Value of bytes per second ("20M", "512K", "0" = none).
type Rate int64

func (r *Rate) String() string {
	if *r == 0 {
		return "0"
	}
	return ratelimit.Format(int64(*r))
}
func (r *Rate) Set(s string) error {
	v, err := ratelimit.Parse(s)
	if err != nil {
		return err
	}
	*r = Rate(v)
	return nil
}
func (r *Rate) Type() string { return "rate" }

// Size is a pflag.Value of bytes ("10G", "500M", "0" = none); same syntax as Rate.
type Size int64

func (s *Size) String() string {
	if *s == 0 {
		return "0"
	}
	return ratelimit.HumanBytes(int64(*s))
}
func (s *Size) Set(v string) error {
	n, err := ratelimit.Parse(v)
	if err != nil {
		return fmt.Errorf("invalid size %q: want e.g. 10G or 500M", v)
	}
	*s = Size(n)
	return nil
}
func (s *Size) Type() string { return "size" }

// Duration is a pflag.Value that also takes a bare number of seconds, as
// the classic dfget's --timeout did.
type Duration time.Duration

func (d *Duration) String() string { return time.Duration(*d).String() }
func (d *Duration) Set(s string) error {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		*d = Duration(n * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want e.g. 30s, 5m or a number of seconds", s)
	}
	*d = Duration(v)
	return nil
}
func (d *Duration) Type() string { return "duration" }

// SplitList splits comma-separated flag values, dropping empty items.
func SplitList(vals []string, seps string) []string {
	var out []string
	for _, v := range vals {
		for _, f := range strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

var _ pflag.Value = (*Rate)(nil)
var _ pflag.Value = (*Size)(nil)
var _ pflag.Value = (*Duration)(nil)
