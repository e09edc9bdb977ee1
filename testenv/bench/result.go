package bench

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ResultPrefix starts dfget's machine-readable result line on stderr:
//
//	dfget-result length=N peers=N seed=N origin=N reused=N elapsed_ms=N back_to_source=bool
const ResultPrefix = "dfget-result "

// DfgetResult is dfget's machine-readable result line.
type DfgetResult struct {
	// Length is the file's size.
	Length int64 `json:"length"`
	// Peers, Seed and Origin are the bytes that came from other peers, from
	// the supernode's seed and straight from the origin; Reused is what was
	// already in the local store.
	Peers  int64 `json:"peers"`
	Seed   int64 `json:"seed"`
	Origin int64 `json:"origin"`
	Reused int64 `json:"reused"`
	// Elapsed is dfget's own measure of the download (from the start of
	// the download to the output file being in place).
	Elapsed time.Duration `json:"elapsedNs"`
	// BackToSource is set when dfget went to the origin itself.
	BackToSource bool `json:"backToSource"`
}

// ErrNoResult means a log holds no dfget result line.
var ErrNoResult = errors.New("no dfget-result line")

// ParseDfgetResult parses one result line (leading text before
// "dfget-result " and surrounding space are ignored). Every field must be
// present exactly once; unknown key=value fields are ignored, so that dfget
// may add fields.
func ParseDfgetResult(line string) (DfgetResult, error) {
	var r DfgetResult
	i := strings.Index(line, ResultPrefix)
	if i < 0 {
		return r, ErrNoResult
	}
	fields := strings.Fields(line[i+len(ResultPrefix):])
	seen := map[string]bool{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return r, fmt.Errorf("dfget-result: field %q is not key=value", f)
		}
		var dst *int64
		switch k {
		case "length":
			dst = &r.Length
		case "peers":
			dst = &r.Peers
		case "seed":
			dst = &r.Seed
		case "origin":
			dst = &r.Origin
		case "reused":
			dst = &r.Reused
		case "elapsed_ms":
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ms < 0 {
				return r, fmt.Errorf("dfget-result: bad elapsed_ms %q", v)
			}
			r.Elapsed = time.Duration(ms) * time.Millisecond
		case "back_to_source":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return r, fmt.Errorf("dfget-result: bad back_to_source %q", v)
			}
			r.BackToSource = b
		default:
			continue
		}
		if seen[k] {
			return r, fmt.Errorf("dfget-result: field %q given twice", k)
		}
		seen[k] = true
		if dst != nil {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return r, fmt.Errorf("dfget-result: bad %s %q", k, v)
			}
			*dst = n
		}
	}
	for _, k := range []string{"length", "peers", "seed", "origin", "reused", "elapsed_ms", "back_to_source"} {
		if !seen[k] {
			return r, fmt.Errorf("dfget-result: field %q missing", k)
		}
	}
	return r, nil
}

// FindDfgetResult parses the last complete result line in a log (a line
// without its final newline is ignored: it may still be being written).
func FindDfgetResult(log string) (DfgetResult, error) {
	end := strings.LastIndexByte(log, '\n')
	if end < 0 {
		return DfgetResult{}, ErrNoResult
	}
	log = log[:end]
	i := strings.LastIndex(log, ResultPrefix)
	if i < 0 {
		return DfgetResult{}, ErrNoResult
	}
	line := log[i:]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	return ParseDfgetResult(line)
}
