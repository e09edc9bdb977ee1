package main

import (
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/cmd/internal/config/configtest"
)

// TestConfigFile: a YAML file alone configures the supernode as the flags
// do, and a mistyped key stops it at start.
func TestConfigFile(t *testing.T) {
	tests := []struct {
		name string
		args []string
		yaml string
	}{
		{"every key", []string{"--listen", "127.0.0.1:9002", "--advertise-addr", "sn1:9002", "--data-dir", "/srv/sn",
			"--origin-concurrency", "6", "--seed-upload-slots", "3", "--seed-fanout", "-1", "--revalidate", "5m",
			"--quota", "100G", "--ttl", "72h", "--peer-ttl", "1m", "--cluster-token-file", "/etc/damselfly/cluster-token",
			"--admin-token-file", "/etc/damselfly/admin-token", "--notifications-token-file", "/etc/damselfly/notify-token",
			"--tls-cert", "/etc/damselfly/tls/tls.crt", "--tls-key", "/etc/damselfly/tls/tls.key", "--tls-ca", "/etc/damselfly/tls/ca.crt",
			"--allow-origin", "10.0.0.0/8", "--allow-origin", "registry.local:5000", "--deny-origin", "169.254.0.0/16",
			"--s3-endpoint", "http://minio:9000", "--s3-endpoint", "https://s3.example.com",
			"--log-level", "debug", "--log-format", "json"}, `
listen: 127.0.0.1:9002
advertise-addr: sn1:9002
data-dir: /srv/sn
origin-concurrency: 6
seed-upload-slots: 3
seed-fanout: -1
revalidate: 5m
quota: 100G
ttl: 72h
peer-ttl: 1m
cluster-token-file: /etc/damselfly/cluster-token
admin-token-file: /etc/damselfly/admin-token
notifications-token-file: /etc/damselfly/notify-token
tls:
  cert: /etc/damselfly/tls/tls.crt
  key: /etc/damselfly/tls/tls.key
  ca: /etc/damselfly/tls/ca.crt
allow-origin: [10.0.0.0/8, "registry.local:5000"]
deny-origin: 169.254.0.0/16
s3-endpoint: ["http://minio:9000", "https://s3.example.com"]
log-level: debug
log-format: json
`},
		{"a few keys", []string{"--data-dir", "/d", "--quota", "1536M"}, "data-dir: /d\nquota: 1.5G\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { configtest.Equivalent(t, newCommand, tc.args, tc.yaml) })
	}
	err := configtest.StartError(t, newCommand, "listen: 127.0.0.1:0\ndata-dri: /x\n")
	if !strings.Contains(err.Error(), `unknown key "data-dri" (did you mean "data-dir"?)`) {
		t.Errorf("typo error: %v", err)
	}
}
