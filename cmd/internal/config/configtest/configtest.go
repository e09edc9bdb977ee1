// Package configtest owns the test helpers that check a command's
// configuration file against its flags: that a YAML file alone configures
// the command exactly as the equivalent flags do, and that a mistyped key
// stops it at start with a clear error.
package configtest

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/cmd/internal/config"
)

// ClearEnv unsets every DAMSELFLY_* variable for the test (restored after).
func ClearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, config.EnvPrefix) {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

// WriteFile writes a config file into a temporary directory and returns its path.
func WriteFile(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Values are a command's configuration keys with their values (slices
// joined with "\n") and whether each was set.
type Values map[string]string

// Configure parses args into a fresh command, applies the configuration
// sources, and returns the keys' values and the set of changed keys.
func Configure(t *testing.T, newCmd func() *cobra.Command, args []string) (Values, map[string]bool) {
	t.Helper()
	cmd := newCmd()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	if err := config.Apply(cmd.Flags()); err != nil {
		t.Fatalf("apply configuration for %q: %v", args, err)
	}
	vals, changed := Values{}, map[string]bool{}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !config.IsKey(f.Name) {
			return
		}
		vals[f.Name] = value(f)
		if f.Changed {
			changed[f.Name] = true
		}
	})
	return vals, changed
}

func value(f *pflag.Flag) string {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return strings.Join(sv.GetSlice(), "\n")
	}
	return f.Value.String()
}

// Equivalent checks that the YAML file alone gives the command built by
// newCmd the same configuration as args: every key the same value and the
// same keys counted as given; that each key the file sets differs from its
// default (so the case proves something); and that --print-config prints
// the same YAML both ways.
func Equivalent(t *testing.T, newCmd func() *cobra.Command, args []string, yaml string) {
	t.Helper()
	ClearEnv(t)
	path := WriteFile(t, yaml)
	fromFlags, changedFlags := Configure(t, newCmd, args)
	fromFile, changedFile := Configure(t, newCmd, []string{"--" + config.FileFlag, path})
	defaults, _ := Configure(t, newCmd, nil)
	for _, k := range sortedKeys(fromFlags) {
		if fromFlags[k] != fromFile[k] {
			t.Errorf("key %q: flags give %q, the file gives %q", k, fromFlags[k], fromFile[k])
		}
		if changedFlags[k] != changedFile[k] {
			t.Errorf("key %q: given by flags %v, by the file %v", k, changedFlags[k], changedFile[k])
		}
		if changedFile[k] && fromFile[k] == defaults[k] {
			t.Errorf("key %q: the case sets it to its default %q; pick another value so that the test can fail", k, defaults[k])
		}
	}
	if len(changedFile) == 0 {
		t.Error("the file sets no key")
	}
	a := Print(t, newCmd, args)
	b := Print(t, newCmd, []string{"--" + config.FileFlag, path})
	if a != b {
		t.Errorf("--print-config differs:\nwith flags:\n%s\nwith the file:\n%s", a, b)
	}
}

// Print runs the command with args and --print-config and returns what it printed.
func Print(t *testing.T, newCmd func() *cobra.Command, args []string) string {
	t.Helper()
	cmd := newCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(append([]string{}, args...), "--"+config.PrintFlag))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%s %q --print-config: %v", cmd.Name(), args, err)
	}
	return out.String()
}

// StartError runs the command with --config FILE (yaml) and returns the
// error it stops with at start; nil fails the test.
func StartError(t *testing.T, newCmd func() *cobra.Command, yaml string) error {
	t.Helper()
	ClearEnv(t)
	cmd := newCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--" + config.FileFlag, WriteFile(t, yaml)})
	err := cmd.Execute()
	if err == nil {
		t.Fatalf("%s started with a bad config file:\n%s", cmd.Name(), yaml)
	}
	return err
}

func sortedKeys(m Values) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
