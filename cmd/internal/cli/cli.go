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

// LogFormats are the values of --log-format.
const LogFormats = "text or json"

// AddLogFormat registers --log-format (text or json) on f, into p.
func AddLogFormat(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "log-format", "text", "log format: text (logfmt-like lines) or json (one JSON object per line)")
}

// SetupLog configures logrus for a process: text to stderr with timestamps
// and the given level.
func SetupLog(level string) (*logrus.Logger, error) { return SetupLogging(level, "text") }

// SetupLogging configures logrus for a process: stderr, the given level, and
// the format of --log-format: "text" (timestamped lines) or "json" (one
// object per line with time, level, msg and the fields).
func SetupLogging(level, format string) (*logrus.Logger, error) {
	lv, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	const ts = "2006-01-02T15:04:05.000Z07:00"
	var formatter logrus.Formatter
	switch format {
	case "text", "":
		formatter = &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: ts}
	case "json":
		formatter = &logrus.JSONFormatter{TimestampFormat: ts}
	default:
		return nil, fmt.Errorf("--log-format %q: want %s", format, LogFormats)
	}
	l := logrus.StandardLogger()
	l.SetOutput(os.Stderr)
	l.SetLevel(lv)
	l.SetFormatter(formatter)
	return l, nil
}

// SignalContext is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Rate is a pflag.Value of bytes per second ("20M", "512K", "0" = none).
type Rate int64

// String is the rate as Set takes it back: "0", "20M", "1536K", "1000".
func (r *Rate) String() string { return compact(int64(*r)) }
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

// String is the size as Set takes it back: "0", "100G", "1536K", "1000".
func (s *Size) String() string { return compact(int64(*s)) }

// compact writes n bytes with the largest binary unit that divides it, so
// that ratelimit.Parse gives n back exactly.
func compact(n int64) string {
	if n == 0 {
		return "0"
	}
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
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
