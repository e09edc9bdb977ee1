package config_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/cmd/internal/config"
	"github.com/damselfly-p2p/damselfly/cmd/internal/config/configtest"
)

// opts is what the test command's flags fill; ran records a run.
type opts struct {
	dataDir, tokenFile, apiToken, tlsCert string
	slots                                 int
	prefetch                              bool
	prefetchLimit                         cli.Rate
	quota                                 cli.Size
	timeout                               time.Duration
	supernodes, mirrors                   []string
	ran                                   bool
	args                                  []string
}

func newTestCommand(o *opts) func() *cobra.Command {
	return func() *cobra.Command {
		*o = opts{}
		cmd := &cobra.Command{Use: "testd", Args: cobra.ExactArgs(1), SilenceUsage: true, SilenceErrors: true,
			RunE: func(_ *cobra.Command, args []string) error { o.ran, o.args = true, args; return nil }}
		f := cmd.Flags()
		f.StringVar(&o.dataDir, "data-dir", "/var/lib/t", "")
		f.StringVar(&o.tokenFile, "cluster-token-file", "", "")
		f.StringVar(&o.apiToken, "api-token", "", "")
		f.StringVar(&o.tlsCert, "tls-cert", "", "")
		f.IntVar(&o.slots, "upload-slots", 8, "")
		f.BoolVar(&o.prefetch, "prefetch", true, "")
		f.Var(&o.prefetchLimit, "prefetch-limit", "")
		f.Var(&o.quota, "quota", "")
		f.DurationVar(&o.timeout, "read-timeout", 30*time.Second, "")
		f.StringSliceVar(&o.supernodes, "supernode", nil, "")
		f.StringArrayVar(&o.mirrors, "mirror", nil, "")
		config.Bind(cmd)
		return cmd
	}
}

func run(t *testing.T, newCmd func() *cobra.Command, args ...string) (string, error) {
	t.Helper()
	cmd := newCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestSources(t *testing.T) {
	const file = `
data-dir: /from/file
upload-slots: 3
prefetch: false
prefetch-limit: 50M
quota: 10G
read-timeout: 1m
supernode: [a:8002, b:8002]
mirror:
  - docker.io=m1,m2
tls:
  cert: /etc/c.pem
`
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(o opts) string
	}{
		{"file", nil, nil, func(o opts) string {
			if o.dataDir != "/from/file" || o.slots != 3 || o.prefetch || o.prefetchLimit != 50<<20 || o.quota != 10<<30 ||
				o.timeout != time.Minute || strings.Join(o.supernodes, " ") != "a:8002 b:8002" ||
				len(o.mirrors) != 1 || o.mirrors[0] != "docker.io=m1,m2" || o.tlsCert != "/etc/c.pem" {
				return "file values not applied"
			}
			return ""
		}},
		{"env over file", map[string]string{"DAMSELFLY_DATA_DIR": "/from/env", "DAMSELFLY_SUPERNODE": "c:1,d:2"}, nil, func(o opts) string {
			if o.dataDir != "/from/env" || strings.Join(o.supernodes, " ") != "c:1 d:2" || o.slots != 3 {
				return "env did not override the file (or dropped the file's other keys)"
			}
			return ""
		}},
		{"flag over env", map[string]string{"DAMSELFLY_DATA_DIR": "/from/env", "DAMSELFLY_UPLOAD_SLOTS": "5"}, []string{"--data-dir", "/from/flag", "--supernode", "e:3"}, func(o opts) string {
			if o.dataDir != "/from/flag" || o.slots != 5 || strings.Join(o.supernodes, " ") != "e:3" {
				return "flag did not override env and file"
			}
			return ""
		}},
		{"config from env", map[string]string{"DAMSELFLY_CONFIG": "FILE"}, []string{}, func(o opts) string {
			if o.dataDir != "/from/file" {
				return "DAMSELFLY_CONFIG not read"
			}
			return ""
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			configtest.ClearEnv(t)
			path := configtest.WriteFile(t, file)
			for k, v := range tc.env {
				t.Setenv(k, strings.ReplaceAll(v, "FILE", path))
			}
			args := append([]string{"ARG"}, tc.args...)
			if tc.env["DAMSELFLY_CONFIG"] == "" {
				args = append(args, "--config", path)
			}
			var o opts
			if _, err := run(t, newTestCommand(&o), args...); err != nil {
				t.Fatal(err)
			}
			if !o.ran || len(o.args) != 1 {
				t.Fatalf("command did not run with its argument: %+v", o)
			}
			if msg := tc.check(o); msg != "" {
				t.Errorf("%s: %+v", msg, o)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, file string
		env        map[string]string
		want       []string
	}{
		{"typo", "dat-dir: /x\n", nil, []string{`unknown key "dat-dir"`, `did you mean "data-dir"?`}},
		{"nested typo", "tls:\n  cret: /x\n", nil, []string{`unknown key "tls-cret"`, `did you mean "tls-cert"?`}},
		{"far from any key", "colour: blue\n", nil, []string{`unknown key "colour"`}},
		{"not a key", "print-config: true\n", nil, []string{`unknown key "print-config"`}},
		{"bad duration", "read-timeout: soon\n", nil, []string{`key "read-timeout"`, "soon"}},
		{"bad int", "upload-slots: many\n", nil, []string{`key "upload-slots"`}},
		{"list for a scalar", "data-dir: [a, b]\n", nil, []string{`key "data-dir"`, "a list"}},
		{"both spellings", "tls-cert: /a\ntls:\n  cert: /b\n", nil, []string{`key "tls-cert" given twice`}},
		{"bad env", "", map[string]string{"DAMSELFLY_UPLOAD_SLOTS": "x"}, []string{"DAMSELFLY_UPLOAD_SLOTS", `key "upload-slots"`}},
		{"bad yaml", "data-dir: [\n", nil, []string{"config "}},
		{"two errors", "dat-dir: /x\nupload-slot: 3\n", nil, []string{`"dat-dir"`, `"upload-slot"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			configtest.ClearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var o opts
			_, err := run(t, newTestCommand(&o), "ARG", "--config", configtest.WriteFile(t, tc.file))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if o.ran {
				t.Error("the command ran despite the bad configuration")
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		var o opts
		_, err := run(t, newTestCommand(&o), "ARG", "--config", "/nonexistent/c.yaml")
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/c.yaml") || o.ran {
			t.Errorf("err %v, ran %v", err, o.ran)
		}
	})
}

func TestPrint(t *testing.T) {
	configtest.ClearEnv(t)
	path := configtest.WriteFile(t, "api-token: s3cret\ncluster-token-file: /etc/damselfly/token\nprefetch-limit: 1536K\n")
	t.Setenv("DAMSELFLY_UPLOAD_SLOTS", "4")
	var o opts
	tests := []struct {
		name string
		args []string
	}{
		{"--print-config without the argument", []string{"--config", path, "--print-config", "--quota", "2G"}},
		{"config print", []string{"config", "print", "--config", path, "--quota", "2G"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, newTestCommand(&o), tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if o.ran {
				t.Error("printing ran the command")
			}
			for _, want := range []string{"api-token: " + config.Masked, "cluster-token-file: /etc/damselfly/token",
				"upload-slots: 4", "quota: 2G", "prefetch-limit: 1536K", "read-timeout: 30s", "prefetch: true", "data-dir: /var/lib/t"} {
				if !strings.Contains(out, want+"\n") {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			for _, bad := range []string{"s3cret", "config:", "print-config", "help"} {
				if strings.Contains(out, bad) {
					t.Errorf("output has %q:\n%s", bad, out)
				}
			}
			// What is printed reads back as the same configuration.
			back := configtest.WriteFile(t, strings.ReplaceAll(out, config.Masked, "s3cret"))
			again, err := run(t, newTestCommand(&o), "--config", back, "--print-config")
			if err != nil {
				t.Fatal(err)
			}
			if again != out {
				t.Errorf("printed configuration does not read back:\n%s\nvs\n%s", out, again)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	for key, want := range map[string]string{"data-dir": "DAMSELFLY_DATA_DIR", "cluster-token-file": "DAMSELFLY_CLUSTER_TOKEN_FILE", "quota": "DAMSELFLY_QUOTA"} {
		if got := config.EnvName(key); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", key, got, want)
		}
	}
	for key, want := range map[string]bool{"api-token": true, "cluster-token-file": false, "tls-key": false, "registry-password": true, "data-dir": false, "header": true} {
		if got := config.IsSecret(key); got != want {
			t.Errorf("IsSecret(%q) = %v", key, got)
		}
	}
}
