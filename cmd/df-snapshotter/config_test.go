package main

import (
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/cmd/internal/config/configtest"
)

// TestConfigFile: a YAML file alone configures df-snapshotter as the flags
// do, and a mistyped key stops it at start.
func TestConfigFile(t *testing.T) {
	tests := []struct {
		name string
		args []string
		yaml string
	}{
		{"every key", []string{"--address", "/run/s.sock", "--socket-group", "containerd", "--root", "/srv/snap",
			"--supernode", "sn:8002", "--daemon-sock", "/run/df.sock", "--no-daemon", "--data-dir", "/srv/snap/p",
			"--upload-listen", "0.0.0.0:7003", "--advertise-ip", "10.1.2.4", "--cluster-token-file", "/etc/damselfly/cluster-token",
			"--tls-cert", "/t/c.pem", "--tls-key", "/t/k.pem", "--tls-ca", "/t/ca.pem", "--allow-origin", "10.0.0.0/8",
			"--deny-origin", "10.9.0.0/16", "--plain-http", "reg.local:5000,reg2:5000", "--mirror", "docker.io=m1.local,m2.local",
			"--mirror", "ghcr.io=m3.local", "--docker-config", "/etc/damselfly/docker.json", "--prefetch-timeout", "0s",
			"--background-fetch=false", "--background-fetch-limit", "50M", "--read-timeout", "1m", "--log-level", "debug",
			"--log-format", "json"}, `
address: /run/s.sock
socket-group: containerd
root: /srv/snap
supernode: sn:8002
daemon-sock: /run/df.sock
no-daemon: true
data-dir: /srv/snap/p
upload-listen: 0.0.0.0:7003
advertise-ip: 10.1.2.4
cluster-token-file: /etc/damselfly/cluster-token
tls-cert: /t/c.pem
tls-key: /t/k.pem
tls-ca: /t/ca.pem
allow-origin: 10.0.0.0/8
deny-origin: 10.9.0.0/16
plain-http: [reg.local:5000, reg2:5000]
mirror:
  - docker.io=m1.local,m2.local
  - ghcr.io=m3.local
docker-config: /etc/damselfly/docker.json
prefetch-timeout: 0s
background-fetch: false
background-fetch-limit: 50M
read-timeout: 1m
log-level: debug
log-format: json
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { configtest.Equivalent(t, newCommand, tc.args, tc.yaml) })
	}
	err := configtest.StartError(t, newCommand, "adress: /run/x.sock\n")
	if !strings.Contains(err.Error(), `unknown key "adress" (did you mean "address"?)`) {
		t.Errorf("typo error: %v", err)
	}
}
