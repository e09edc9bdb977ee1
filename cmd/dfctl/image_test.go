package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/testenv"
)

func TestIsPlainHTTP(t *testing.T) {
	o := &registryOptions{plainHTTP: []string{"reg.lan", "other.lan:5000", "[fd00::1]"}}
	for host, want := range map[string]bool{
		"localhost":         true,
		"localhost:5000":    true,
		"127.0.0.1:5000":    true,
		"127.1.2.3":         true,
		"[::1]:5000":        true,
		"reg.lan":           true,
		"REG.lan:443":       true, // entry without port: any port
		"other.lan:5000":    true,
		"other.lan:5001":    false,
		"other.lan":         false,
		"[fd00::1]:5000":    true,
		"docker.io":         false,
		"registry.example":  false,
		"localhost.example": false,
	} {
		got, err := o.isPlainHTTP(host)
		if err != nil || got != want {
			t.Errorf("%s: got %v (%v), want %v", host, got, err, want)
		}
	}
	all := &registryOptions{plainHTTP: []string{"*"}}
	if got, _ := all.isPlainHTTP("registry.example:443"); !got {
		t.Error("--plain-http alone should match every host")
	}
}

func TestPlainHTTPFlag(t *testing.T) {
	cmd := newImageConvertCommand()
	if err := cmd.ParseFlags([]string{"--plain-http"}); err != nil {
		t.Fatal(err)
	}
	cmd2 := newImageConvertCommand()
	if err := cmd2.ParseFlags([]string{"--plain-http=a.lan,b.lan:5000"}); err != nil {
		t.Fatal(err)
	}
	v1, _ := cmd.Flags().GetStringSlice("plain-http")
	v2, _ := cmd2.Flags().GetStringSlice("plain-http")
	if strings.Join(v1, ",") != "*" || strings.Join(v2, ",") != "a.lan,b.lan:5000" {
		t.Errorf("flag values %v %v", v1, v2)
	}
}

func TestDockerConfigPath(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", "/etc/dockercfg")
	if p, explicit := (&registryOptions{}).dockerConfigPath(); p != "/etc/dockercfg/config.json" || explicit {
		t.Errorf("DOCKER_CONFIG: %s %v", p, explicit)
	}
	if p, explicit := (&registryOptions{dockerConfig: "/x.json"}).dockerConfigPath(); p != "/x.json" || !explicit {
		t.Errorf("flag: %s %v", p, explicit)
	}
	// A named file must exist; the default one may be missing.
	if _, err := (&registryOptions{dockerConfig: filepath.Join(t.TempDir(), "nope.json")}).resolver(); err == nil {
		t.Error("missing --docker-config: want error")
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := (&registryOptions{}).resolver(); err != nil {
		t.Errorf("missing default config: %v", err)
	}
}

// TestResolverBearerAuth runs the resolver against a registry that wants a
// bearer token from a token server that wants the docker config's basic
// credentials, and checks that the credentials never reach the registry
// itself nor the debug log.
func TestResolverBearerAuth(t *testing.T) {
	const user, secret = "alice", "s3cr3t-Pa55"
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":2},"layers":[]}`)
	reg := testenv.NewFakeRegistry(t, testenv.FakeAuth{Scheme: "bearer", Scope: true, Token: "tok-123", Users: map[string]string{user: secret}})
	mdgst := reg.AddManifest("team/app", "application/vnd.oci.image.manifest.v1+json", manifest, "v1").Digest
	host := reg.Host

	cfg := filepath.Join(t.TempDir(), "config.json")
	enc := base64.StdEncoding.EncodeToString([]byte(user + ":" + secret))
	os.WriteFile(cfg, []byte(`{"auths":{"`+host+`":{"auth":"`+enc+`"}}}`), 0o600)

	var logBuf bytes.Buffer
	oldOut, oldLevel := logrus.StandardLogger().Out, logrus.GetLevel()
	logrus.SetOutput(&logBuf)
	logrus.SetLevel(logrus.TraceLevel)
	defer func() { logrus.SetOutput(oldOut); logrus.SetLevel(oldLevel) }()

	o := &registryOptions{dockerConfig: cfg}
	r, err := o.resolver()
	if err != nil {
		t.Fatal(err)
	}
	name, desc, err := r.Resolve(context.Background(), host+"/team/app:v1")
	if err != nil {
		t.Fatalf("resolve: %v\ntoken scopes: %v", err, reg.TokenScopes())
	}
	if desc.Digest != mdgst || name != host+"/team/app:v1" {
		t.Errorf("resolved %s %v", name, desc)
	}
	if sc := reg.TokenScopes(); len(sc) == 0 || sc[0] != "repository:team/app:pull" {
		t.Errorf("token scopes %v", sc)
	}
	for i, a := range reg.Authorizations() {
		if strings.Contains(a, "Basic") {
			t.Errorf("basic credentials sent to the registry with request %s", reg.Requests()[i])
		}
	}
	if l := logBuf.String(); strings.Contains(l, secret) || strings.Contains(l, enc) || strings.Contains(l, "tok-123") {
		t.Errorf("credentials in the log:\n%s", l)
	}

	// Without credentials the token server refuses, and the error says so.
	o2 := &registryOptions{dockerConfig: filepath.Join(t.TempDir(), "empty.json")}
	os.WriteFile(o2.dockerConfig, []byte(`{}`), 0o600)
	r2, _ := o2.resolver()
	if _, _, err := r2.Resolve(context.Background(), host+"/team/app:v1"); err == nil {
		t.Error("anonymous resolve of a private repository: want error")
	}
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                     "docker.io/library/busybox:latest",
		"127.0.0.1:5000/test/bb":      "127.0.0.1:5000/test/bb:latest",
		"127.0.0.1:5000/test/bb:esgz": "127.0.0.1:5000/test/bb:esgz",
	} {
		got, err := normalizeRef(in)
		if err != nil || got != want {
			t.Errorf("%s: %s %v", in, got, err)
		}
	}
	if _, err := normalizeRef("no spaces allowed"); err == nil {
		t.Error("bad reference: want error")
	}
}

func TestPlainHTTPSpaceHint(t *testing.T) {
	cmd := newImageCommand()
	cmd.SetArgs([]string{"convert", "--plain-http", "reg.lan:5000", "reg.lan:5000/a:1", "reg.lan:5000/a:2"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "--plain-http=HOST") {
		t.Errorf("want a hint about --plain-http=HOST, got %v", err)
	}
}
