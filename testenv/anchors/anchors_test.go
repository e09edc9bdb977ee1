package anchors

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// lookup walks a decoded YAML document along keys.
func lookup(t *testing.T, doc map[string]any, keys ...string) any {
	t.Helper()
	var cur any = doc
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%v: %v is not a map", keys, cur)
		}
		cur, ok = m[k]
		if !ok {
			t.Fatalf("%v: no key %q", keys, k)
		}
	}
	return cur
}

func TestConfigsRender(t *testing.T) {
	ports := krakenPorts{Dir: "/tmp/kr-x", TestFSPort: 1001, OriginPort: 1002, OriginPeerPort: 1003, RedisPort: 1004,
		TrackerPort: 1005, UnusedPort: 1006, AgentPort: 1007, AgentPeerPort: 1008, AgentRegistryPort: 1009}
	df := struct {
		Port, DownloadPort int
		Home, Dir, User    string
	}{Port: 2001, DownloadPort: 2002, Home: "/h", Dir: "/d", User: "u"}
	tests := []struct {
		name string
		tmpl string
		data any
		keys []string
		want any
	}{
		{"dragonfly link limit lifted", dragonflyConfig, df, []string{"base", "linkLimit"}, "100G"},
		{"dragonfly bandwidth lifted", dragonflyConfig, df, []string{"base", "maxBandwidth"}, "100G"},
		{"dragonfly no reserve", dragonflyConfig, df, []string{"base", "systemReservedBandwidth"}, "0B"},
		{"dragonfly download port", dragonflyConfig, df, []string{"base", "downloadPort"}, float64(2002)},
		{"origin backend is testfs", krakenOriginConfig, ports, []string{"backends"}, nil},
		{"origin owns its hash ring", krakenOriginConfig, ports, []string{"cluster", "static"}, []any{"127.0.0.1:1002"}},
		{"origin TLS off", krakenOriginConfig, ports, []string{"tls", "server", "disabled"}, true},
		{"tracker redis", krakenTrackerConfig, ports, []string{"peerstore", "redis", "addr"}, "127.0.0.1:1004"},
		{"tracker origin", krakenTrackerConfig, ports, []string{"origin", "hosts", "static"}, []any{"127.0.0.1:1002"}},
		{"agent tracker", krakenAgentConfig, ports, []string{"tracker", "hosts", "static"}, []any{"127.0.0.1:1005"}},
		{"agent bandwidth limiter off", krakenAgentConfig, ports, []string{"scheduler", "conn", "bandwidth", "enable"}, false},
		{"agent client TLS off", krakenAgentConfig, ports, []string{"tls", "client", "disabled"}, true},
		{"agent registry socket", krakenAgentConfig, ports, []string{"registry", "docker", "http", "addr"}, "/tmp/kr-x/registry.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, err := render(t.TempDir(), "c.yaml", tt.tmpl, tt.data)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := yaml.Unmarshal(b, &doc); err != nil {
				t.Fatalf("rendered config is not YAML: %v\n%s", err, b)
			}
			got := lookup(t, doc, tt.keys...)
			if tt.want == nil {
				// Only presence is checked, plus the testfs address.
				be := got.([]any)[0].(map[string]any)
				if addr := lookup(t, be, "backend", "testfs", "addr"); addr != "127.0.0.1:1001" {
					t.Fatalf("testfs addr %v", addr)
				}
				return
			}
			if gs, ws := yamlString(t, got), yamlString(t, tt.want); gs != ws {
				t.Fatalf("%v = %s, want %s", tt.keys, gs, ws)
			}
		})
	}
}

func yamlString(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRenderMissingKey(t *testing.T) {
	if _, err := render(t.TempDir(), "x", "{{.Nope}}", struct{ A int }{}); err == nil {
		t.Fatal("render with a missing field succeeded")
	}
}

func TestCached(t *testing.T) {
	a := Anchor{Name: "thing", Version: "v1.2.3", Binaries: map[string]string{"one": "./one", "two": "./two"}}
	cache := t.TempDir()
	dir := a.Dir(cache)
	if want := filepath.Join(cache, "thing-1.2.3"); dir != want {
		t.Fatalf("Dir = %s, want %s", dir, want)
	}
	write := func(name string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name string
		do   func()
		want bool
	}{
		{"empty", func() {}, false},
		{"binaries without stamp", func() { write("one", 0o755); write("two", 0o755) }, false},
		{"complete", func() { write(stampFile, 0o644) }, true},
		{"binary not executable", func() { os.Remove(filepath.Join(dir, "two")); write("two", 0o644) }, false},
		{"binary missing", func() { os.Remove(filepath.Join(dir, "two")) }, false},
	}
	for _, s := range steps {
		s.do()
		if got := a.Cached(cache); got != s.want {
			t.Fatalf("%s: Cached = %v, want %v", s.name, got, s.want)
		}
	}
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := freePorts(40)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("port %d repeated or invalid in %v", p, ports)
		}
		seen[p] = true
	}
}
