// Package clitest owns test helpers for the command-line mains: a golden
// record of a command's flags (names, shorthands, types, defaults and help
// texts) so that refactoring the flag code cannot change what users see.
package clitest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite the golden flag files")

// FlagTable describes every flag of fs, one line each, sorted by name.
func FlagTable(fs *pflag.FlagSet) string {
	var lines []string
	fs.VisitAll(func(f *pflag.Flag) {
		short := "  "
		if f.Shorthand != "" {
			short = "-" + f.Shorthand
		}
		hidden := ""
		if f.Hidden {
			hidden = " hidden"
		}
		lines = append(lines, fmt.Sprintf("--%s %s %s default=%q%s\n\t%s", f.Name, short, f.Value.Type(), f.DefValue, hidden, f.Usage))
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// Golden compares FlagTable(fs) with the file at path (under testdata),
// rewriting it when the test runs with -update. home is replaced by $HOME so
// the record does not depend on who runs the test.
func Golden(t *testing.T, fs *pflag.FlagSet, path string) {
	t.Helper()
	got := FlagTable(fs)
	if home, err := os.UserHomeDir(); err == nil && home != "" && home != "/" {
		got = strings.ReplaceAll(got, home, "$HOME")
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden flags (run the test with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("flags differ from %s (names, shorthands, defaults and help are what users see; run with -update only if the change is meant):\n%s",
			path, diff(string(want), got))
	}
}

// diff lists the lines only in want (-) and only in got (+).
func diff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
