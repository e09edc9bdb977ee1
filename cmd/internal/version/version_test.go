package version

import (
	"bytes"
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	stamped := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	devel := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	tests := []struct {
		name                 string
		v, c                 string
		read                 func() (*debug.BuildInfo, bool)
		wantVersion, wantRev string
	}{
		{"ldflags win", "v2.0.0", "fff", stamped, "v2.0.0", "fff"},
		{"build info", "", "", stamped, "v1.4.0", "abc123-dirty"},
		{"devel build", "", "", devel, "devel", "unknown"},
		{"no build info", "", "", none, "devel", "unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := get(tc.v, tc.c, tc.read)
			if got.Version != tc.wantVersion || got.Commit != tc.wantRev || got.Go != runtime.Version() {
				t.Errorf("got %+v, want version %q commit %q", got, tc.wantVersion, tc.wantRev)
			}
		})
	}
}

func TestCommand(t *testing.T) {
	old := Version
	Version = "v9.9.9"
	t.Cleanup(func() { Version = old })
	for _, args := range [][]string{nil, {"--json"}} {
		cmd := Command("dfget")
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if len(args) == 0 {
			if !strings.HasPrefix(out.String(), "dfget v9.9.9 (commit ") || !strings.Contains(out.String(), runtime.Version()) {
				t.Errorf("output %q", out.String())
			}
			continue
		}
		var i Info
		if err := json.Unmarshal(out.Bytes(), &i); err != nil || i.Version != "v9.9.9" || i.Go != runtime.Version() {
			t.Errorf("json %q: %+v %v", out.String(), i, err)
		}
	}
}
