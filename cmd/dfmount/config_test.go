package main

import (
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/cmd/internal/config"
	"github.com/damselfly-p2p/damselfly/cmd/internal/config/configtest"
)

// TestConfigFile: a YAML file alone configures dfmount as the flags do,
// and a mistyped key stops it at start.
func TestConfigFile(t *testing.T) {
	tests := []struct {
		name string
		args []string
		yaml string
	}{
		{"every key", []string{"--type", "dataset", "--prefetch=false", "--prefetch-limit", "20M", "--read-timeout", "10s",
			"-H", "Authorization: Bearer abc", "--header-host", "cdn.example.com", "--digest", "sha256:00", "--toc-digest", "sha256:11",
			"--tag", "v1", "--filter", "Signature,Expires", "--supernode", "sn:8002", "--daemon-sock", "/run/df.sock", "--no-daemon",
			"--data-dir", "/srv/mnt", "--upload-listen", "0.0.0.0:7004", "--advertise-ip", "10.1.2.5",
			"--cluster-token-file", "/etc/damselfly/cluster-token", "--tls-cert", "/t/c.pem", "--tls-key", "/t/k.pem", "--tls-ca", "/t/ca.pem",
			"--allow-origin", "10.0.0.0/8", "--deny-origin", "10.9.0.0/16", "--log-file", "/var/log/dfmount.log",
			"--allow-other", "--debug-fuse", "--log-level", "debug", "--log-format", "json"}, `
type: dataset
prefetch: false
prefetch-limit: 20M
read-timeout: 10s
header: ["Authorization: Bearer abc"]
header-host: [cdn.example.com]
digest: sha256:00
toc-digest: sha256:11
tag: v1
filter: [Signature, Expires]
supernode: [sn:8002]
daemon-sock: /run/df.sock
no-daemon: true
data-dir: /srv/mnt
upload-listen: 0.0.0.0:7004
advertise-ip: 10.1.2.5
cluster-token-file: /etc/damselfly/cluster-token
tls:
  cert: /t/c.pem
  key: /t/k.pem
  ca: /t/ca.pem
allow-origin: [10.0.0.0/8]
deny-origin: [10.9.0.0/16]
log-file: /var/log/dfmount.log
allow-other: true
debug-fuse: true
log-level: debug
log-format: json
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { configtest.Equivalent(t, newCommand, tc.args, tc.yaml) })
	}
	// The origin credentials in -H are masked when printed.
	out := configtest.Print(t, newCommand, []string{"-H", "Authorization: Bearer abc"})
	if strings.Contains(out, "Bearer abc") || !strings.Contains(out, config.Masked) {
		t.Errorf("header not masked:\n%s", out)
	}
	err := configtest.StartError(t, newCommand, "prefetch-limt: 1M\n")
	if !strings.Contains(err.Error(), `unknown key "prefetch-limt" (did you mean "prefetch-limit"?)`) {
		t.Errorf("typo error: %v", err)
	}
}
