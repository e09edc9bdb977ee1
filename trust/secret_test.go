package trust

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testToken = "0123456789abcdef-cluster-token"

func mustSecret(t *testing.T, token string) Secret {
	t.Helper()
	s, err := NewSecret(token)
	if err != nil {
		t.Fatalf("NewSecret: %v", err)
	}
	return s
}

func writeFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
	return p
}

func TestLoadSecretFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		wantErr error // nil: success
		want    string
	}{
		{"trims whitespace", "  " + testToken + "\n\n", 0o600, nil, testToken},
		{"owner read only", testToken, 0o400, nil, testToken},
		{"empty", "", 0o600, ErrWeakSecret, ""},
		{"only whitespace", " \n\t\n", 0o600, ErrWeakSecret, ""},
		{"short", "0123456789abcde", 0o600, ErrWeakSecret, ""},
		{"inner space", "0123456789 abcdef", 0o600, ErrWeakSecret, ""},
		{"inner newline", "0123456789\nabcdef", 0o600, ErrWeakSecret, ""},
		{"group readable", testToken, 0o640, ErrInsecurePermissions, ""},
		{"other readable", testToken, 0o604, ErrInsecurePermissions, ""},
		{"world readable", testToken, 0o644, ErrInsecurePermissions, ""},
		{"too large", strings.Repeat("a", maxSecretFileSize+1), 0o600, nil, "error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.content, tc.mode)
			s, err := LoadSecretFile(p)
			switch {
			case tc.want == "error":
				if err == nil {
					t.Fatal("want an error")
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not name the file", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if s.Reveal() != tc.want {
					t.Errorf("token = %q, want %q", s.Reveal(), tc.want)
				}
			}
			if tok := strings.TrimSpace(tc.content); err != nil && tok != "" && strings.Contains(err.Error(), tok) {
				t.Errorf("error %q echoes the token", err)
			}
		})
	}
}

func TestLoadSecretFileMissingAndDir(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope")
	if _, err := LoadSecretFile(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: err = %v, want one naming %s", err, missing)
	}
	if _, err := LoadSecretFile(dir); err == nil {
		t.Error("directory: want an error")
	}
}

func TestSecretFromFlagOrEnv(t *testing.T) {
	flagFile := writeFile(t, "flag-token-0123456789", 0o600)
	envFile := writeFile(t, "env-token-0123456789", 0o600)
	const env = "DAMSELFLY_TEST_TOKEN_FILE"
	tests := []struct {
		name, flag, env, want string
		wantErr               error
	}{
		{name: "flag wins", flag: flagFile, env: envFile, want: "flag-token-0123456789"},
		{name: "env fallback", env: envFile, want: "env-token-0123456789"},
		{name: "neither", wantErr: ErrNoSecret},
		{name: "env names missing file", env: filepath.Join(t.TempDir(), "x"), wantErr: os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(env, tc.env)
			s, err := SecretFromFlagOrEnv(tc.flag, env)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Reveal() != tc.want {
				t.Errorf("token = %q, want %q", s.Reveal(), tc.want)
			}
		})
	}
}

func TestSecretEqualAndMatches(t *testing.T) {
	a, a2, b := mustSecret(t, testToken), mustSecret(t, testToken+"\n"), mustSecret(t, "another-token-0123456789")
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"same token", a.Equal(a2), true},
		{"different token", a.Equal(b), false},
		{"zero vs set", Secret{}.Equal(a), false},
		{"zero vs zero", Secret{}.Equal(Secret{}), false},
		{"matches itself", a.Matches(testToken), true},
		{"matches prefix", a.Matches(testToken[:20]), false},
		{"matches other", a.Matches("another-token-0123456789"), false},
		{"zero matches empty", Secret{}.Matches(""), false},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	s := mustSecret(t, testToken)
	k, err := DeriveKey(s)
	if err != nil {
		t.Fatal(err)
	}
	type exported struct {
		Token Secret
		Key   Key
	}
	type unexported struct {
		token Secret
		key   Key
	}
	var outs []string
	for _, verb := range []string{"%v", "%s", "%+v", "%#v", "%q", "%x", "%d"} {
		outs = append(outs,
			fmt.Sprintf(verb, s), fmt.Sprintf(verb, &s), fmt.Sprintf(verb, k),
			fmt.Sprintf(verb, exported{s, k}), fmt.Sprintf(verb, unexported{s, k}),
			fmt.Sprintf(verb, []Secret{s}), fmt.Sprintf(verb, map[string]Secret{"a": s}))
	}
	for _, v := range []any{s, &s, k, exported{s, k}, map[string]any{"s": s}} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, string(j))
	}
	txt, _ := s.MarshalText()
	outs = append(outs, string(txt), fmt.Sprint(s), fmt.Sprintln(k))
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "token", s, "key", k)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "token", s, "key", k)
	outs = append(outs, logs.String())

	for _, out := range outs {
		if strings.Contains(out, testToken) || strings.Contains(out, "0123456789abcdef") {
			t.Errorf("secret leaked: %q", out)
		}
	}
	if got := fmt.Sprintf("%v", s); got != "REDACTED" {
		t.Errorf("%%v = %q, want REDACTED", got)
	}
	if j, _ := json.Marshal(exported{Token: s}); !strings.Contains(string(j), `"Token":"REDACTED"`) {
		t.Errorf("json = %s, want Token REDACTED", j)
	}
	if !strings.Contains(logs.String(), "token=REDACTED") {
		t.Errorf("slog text output lacks token=REDACTED: %s", logs.String())
	}
}
