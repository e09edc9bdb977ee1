package main

import (
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/cmd/internal/config/configtest"
)

// TestConfigFile: a YAML file alone configures dfdaemon as the flags do,
// and a mistyped key stops it at start.
func TestConfigFile(t *testing.T) {
	tests := []struct {
		name string
		args []string
		yaml string
	}{
		{"every key", []string{"--supernode", "sn-0.sn:8002,sn-1.sn:8002", "--data-dir", "/srv/df", "--upload-listen", "0.0.0.0:7002",
			"--advertise-ip", "10.1.2.3", "--sock", "/run/df.sock", "--upload-limit", "100M", "--download-limit", "200M",
			"--upload-slots", "16", "--idc", "eu1", "--rack", "r7", "--concurrency", "12",
			"--cluster-token-file", "/etc/damselfly/cluster-token", "--tls-cert", "/t/c.pem", "--tls-key", "/t/k.pem", "--tls-ca", "/t/ca.pem",
			"--allow-origin", "10.0.0.0/8", "--deny-origin", "10.9.0.0/16", "--quota", "50G", "--ttl", "24h",
			"--gc-interval", "5m", "--seed-idle", "1h", "--socket-group", "docker", "--log-level", "warn", "--log-format", "json",
			"--proxy-listen", "0.0.0.0:65001", "--registry", "https://mirror.gcr.io", "--insecure-registry", "reg.local:5000",
			"--forward-proxy", "--proxy-rule", `^https://files\.example\.com/.*\.iso$`, "--proxy-rules-file", "/etc/damselfly/rules",
			"--proxy-read-timeout", "2m"}, `
supernode: [sn-0.sn:8002, sn-1.sn:8002]
data-dir: /srv/df
upload-listen: 0.0.0.0:7002
advertise-ip: 10.1.2.3
sock: /run/df.sock
upload-limit: 100M
download-limit: 200M
upload-slots: 16
idc: eu1
rack: r7
concurrency: 12
cluster-token-file: /etc/damselfly/cluster-token
tls:
  cert: /t/c.pem
  key: /t/k.pem
  ca: /t/ca.pem
allow-origin: [10.0.0.0/8]
deny-origin: [10.9.0.0/16]
quota: 50G
ttl: 24h
gc-interval: 5m
seed-idle: 1h
socket-group: docker
log-level: warn
log-format: json
proxy-listen: 0.0.0.0:65001
registry: https://mirror.gcr.io
insecure-registry: reg.local:5000
forward-proxy: true
proxy-rule:
  - ^https://files\.example\.com/.*\.iso$
proxy-rules-file: /etc/damselfly/rules
proxy-read-timeout: 2m
`},
		{"comma list as a string", []string{"--supernode", "a:1,b:2"}, "supernode: a:1,b:2\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { configtest.Equivalent(t, newCommand, tc.args, tc.yaml) })
	}
	err := configtest.StartError(t, newCommand, "supernodes: [a:1]\n")
	if !strings.Contains(err.Error(), `unknown key "supernodes" (did you mean "supernode"?)`) {
		t.Errorf("typo error: %v", err)
	}
}
