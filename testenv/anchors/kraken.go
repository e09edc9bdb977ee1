package anchors

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// Kraken configurations: each component complete (no "extends"), TLS off,
// logs to stdout (the process log), every path under the instance's own
// directory, and the agents' bandwidth limiter (on in Kraken's base agent
// config: 200 MB/s egress, 300 MB/s ingress) off.
const krakenZap = `zap:
  level: warn
  encoding: console
  disableStacktrace: true
  encoderConfig:
    messageKey: message
    levelKey: level
    timeKey: ts
    callerKey: caller
    levelEncoder: capital
    timeEncoder: iso8601
    durationEncoder: seconds
    callerEncoder: short
  outputPaths: [stdout]
  errorOutputPaths: [stdout]
tls:
  name: kraken
  server:
    disabled: true
  client:
    disabled: true
`

const krakenOriginConfig = krakenZap + `metainfogen:
  piece_lengths:
    0: 4MB
peer_id_factory: addr_hash
scheduler:
  torrentlog:
    disable: true
localdb:
  source: {{.Dir}}/origin.db
castore:
  upload_dir: {{.Dir}}/upload/
  cache_dir: {{.Dir}}/cache/
blobserver:
  listener:
    net: unix
    addr: {{.Dir}}/origin.sock
backends:
  - namespace: .*
    backend:
      testfs:
        addr: 127.0.0.1:{{.TestFSPort}}
        root: blobs
        name_path: identity
cluster:
  static:
    - 127.0.0.1:{{.OriginPort}}
hashring:
  max_replica: 1
writeback:
  retry_interval: 100ms
  poll_retries_interval: 250ms
nginx:
  name: kraken-origin
  cache_dir: {{.Dir}}/nginx/
  log_dir: {{.Dir}}/
`

const krakenTrackerConfig = krakenZap + `peerstore:
  redis:
    addr: 127.0.0.1:{{.RedisPort}}
peerhandoutpolicy:
  priority: completeness
origin:
  hosts:
    static:
      - 127.0.0.1:{{.OriginPort}}
trackerserver:
  announce_interval: 3s
  listener:
    net: unix
    addr: {{.Dir}}/tracker.sock
nginx:
  name: kraken-tracker
  cache_dir: {{.Dir}}/nginx/
  log_dir: {{.Dir}}/
`

const krakenAgentConfig = krakenZap + `tracker:
  hosts:
    static:
      - 127.0.0.1:{{.TrackerPort}}
build_index:
  hosts:
    static:
      - 127.0.0.1:{{.UnusedPort}}
scheduler:
  torrentlog:
    disable: true
  dispatch:
    piece_request_policy: rarest_first
  conn:
    bandwidth:
      enable: false
store:
  download_dir: {{.Dir}}/download/
  cache_dir: {{.Dir}}/cache/
registry:
  docker:
    version: 0.1
    log:
      level: error
    http:
      net: unix
      addr: {{.Dir}}/registry.sock
peer_id_factory: addr_hash
allowed_cidrs:
  - 127.0.0.1
nginx:
  name: kraken-agent
  cache_dir: {{.Dir}}/nginx/
  log_dir: {{.Dir}}/
`

// krakenPorts is what the configuration templates are rendered with.
type krakenPorts struct {
	Dir                                           string
	TestFSPort, OriginPort, OriginPeerPort        int
	RedisPort, TrackerPort, UnusedPort, AgentPort int
	AgentPeerPort, AgentRegistryPort              int
}

// KrakenAgentGap is the pause between starting two agents: agents on one
// host write the same nginx configuration file and pid file, so each one's
// nginx must have read its configuration before the next starts.
var KrakenAgentGap = 1500 * time.Millisecond

// KrakenNamespace is the namespace blobs are uploaded to and fetched from.
const KrakenNamespace = "bench"

// KrakenCluster is a running Kraken: testfs, redis, origin, tracker and
// agents, each a separate process on 127.0.0.1.
type KrakenCluster struct {
	// Origin is the origin's address (its nginx), for uploads.
	Origin string
	// Agents are the agents' server addresses, for downloads.
	Agents []string
	// OriginProc and AgentProcs are the origin and agent processes (for
	// their CPU time).
	OriginProc *testenv.Proc
	AgentProcs []*testenv.Proc

	procs procs
}

// shortDir makes a directory under /tmp (unix socket paths are limited to
// 108 bytes), removed by t's cleanup.
func shortDir(t testenv.TB, prefix string) (string, error) {
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir, nil
}

// StartKraken starts a Kraken cluster with the given number of agents and
// waits until every component listens. Every process ends with t's cleanup
// or Stop.
func StartKraken(ctx context.Context, t testenv.TB, binDir string, agents int) (*KrakenCluster, error) {
	if err := binDirOK(Kraken, binDir); err != nil {
		return nil, err
	}
	if _, err := Nginx(); err != nil {
		return nil, err
	}
	redis, err := RedisServer()
	if err != nil {
		return nil, err
	}
	k := &KrakenCluster{}
	ok := false
	defer func() {
		if !ok {
			k.Stop()
		}
	}()
	ports, err := freePorts(6 + 3*agents)
	if err != nil {
		return nil, err
	}
	p := krakenPorts{TestFSPort: ports[0], OriginPort: ports[1], OriginPeerPort: ports[2],
		RedisPort: ports[3], TrackerPort: ports[4], UnusedPort: ports[5]}
	ports = ports[6:]
	start := func(name string, args ...string) *testenv.Proc {
		pr := testenv.Start(t, binDir, name, args...)
		k.procs = append(k.procs, pr)
		return pr
	}
	dir := func(name string) (string, error) {
		d, err := shortDir(t, "kr-"+name+"-")
		return d, err
	}

	// testfs (the storage backend) and redis (the tracker's peer store).
	testfs := start("kraken-testfs", "--port", fmt.Sprint(p.TestFSPort))
	rdir, err := dir("redis")
	if err != nil {
		return nil, err
	}
	rd := start(redis, "--port", fmt.Sprint(p.RedisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", rdir)
	if err := waitTCP(ctx, loopback(p.TestFSPort), testfs); err != nil {
		return nil, fmt.Errorf("kraken testfs: %w", err)
	}
	if err := waitTCP(ctx, loopback(p.RedisPort), rd); err != nil {
		return nil, fmt.Errorf("kraken redis: %w", err)
	}

	// origin, then tracker: each starts its own nginx in front of a unix
	// socket; start them apart for the shared nginx pid file.
	if p.Dir, err = dir("origin"); err != nil {
		return nil, err
	}
	conf, err := render(p.Dir, "origin.yaml", krakenOriginConfig, p)
	if err != nil {
		return nil, err
	}
	k.OriginProc = start("kraken-origin", "--config", conf, "--blobserver-hostname", "127.0.0.1",
		"--blobserver-port", fmt.Sprint(p.OriginPort), "--peer-ip", "127.0.0.1", "--peer-port", fmt.Sprint(p.OriginPeerPort))
	k.Origin = loopback(p.OriginPort)
	if err := waitTCP(ctx, k.Origin, k.OriginProc); err != nil {
		return nil, fmt.Errorf("kraken origin: %w", err)
	}
	if p.Dir, err = dir("tracker"); err != nil {
		return nil, err
	}
	if conf, err = render(p.Dir, "tracker.yaml", krakenTrackerConfig, p); err != nil {
		return nil, err
	}
	tracker := start("kraken-tracker", "--config", conf, "--port", fmt.Sprint(p.TrackerPort))
	if err := waitTCP(ctx, loopback(p.TrackerPort), tracker); err != nil {
		return nil, fmt.Errorf("kraken tracker: %w", err)
	}

	for i := range agents {
		if i > 0 && !sleep(ctx, KrakenAgentGap) {
			return nil, ctx.Err()
		}
		a := p
		if a.Dir, err = dir(fmt.Sprintf("agent%d", i)); err != nil {
			return nil, err
		}
		a.AgentPort, a.AgentPeerPort, a.AgentRegistryPort = ports[3*i], ports[3*i+1], ports[3*i+2]
		if conf, err = render(a.Dir, "agent.yaml", krakenAgentConfig, a); err != nil {
			return nil, err
		}
		ap := start("kraken-agent", "--config", conf, "--peer-ip", "127.0.0.1", "--peer-port", fmt.Sprint(a.AgentPeerPort),
			"--agent-server-port", fmt.Sprint(a.AgentPort), "--agent-registry-port", fmt.Sprint(a.AgentRegistryPort))
		k.AgentProcs = append(k.AgentProcs, ap)
		k.Agents = append(k.Agents, loopback(a.AgentPort))
		// The registry port is nginx's: listening there means this agent's
		// nginx has read its configuration.
		if err := waitTCP(ctx, loopback(a.AgentRegistryPort), ap); err != nil {
			return nil, fmt.Errorf("kraken agent %d: %w", i, err)
		}
		if err := waitTCP(ctx, k.Agents[i], ap); err != nil {
			return nil, fmt.Errorf("kraken agent %d: %w", i, err)
		}
	}
	ok = true
	return k, nil
}

// Upload puts the file at path into the origin as blob sha256:hex of
// KrakenNamespace: POST .../uploads (the upload id comes back in Location),
// PATCH each chunk with its Content-Range, PUT to commit.
func (k *KrakenCluster) Upload(ctx context.Context, path, hex string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("kraken upload: %w", err)
	}
	defer f.Close()
	base := fmt.Sprintf("http://%s/namespace/%s/blobs/sha256:%s/uploads", k.Origin, KrakenNamespace, hex)
	client := &http.Client{Timeout: 10 * time.Minute}
	do := func(method, url string, body io.Reader, hdr map[string]string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, body)
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("kraken upload: %s %s: %w", method, url, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return nil, fmt.Errorf("kraken upload: %s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
		}
		return resp, nil
	}
	resp, err := do(http.MethodPost, base, nil, nil)
	if err != nil {
		return err
	}
	uid := resp.Header.Get("Location")
	if uid == "" {
		return fmt.Errorf("kraken upload: POST %s: no Location", base)
	}
	const chunk = 32 << 20
	buf := make([]byte, chunk)
	var pos int64
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if _, err := do(http.MethodPatch, base+"/"+uid, bytes.NewReader(buf[:n]),
				map[string]string{"Content-Range": fmt.Sprintf("%d-%d", pos, pos+int64(n))}); err != nil {
				return err
			}
			pos += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("kraken upload: read %s: %w", filepath.Base(path), err)
		}
	}
	_, err = do(http.MethodPut, base+"/"+uid, nil, nil)
	return err
}

// BlobURL is the URL of blob sha256:hex on agent i.
func (k *KrakenCluster) BlobURL(i int, hex string) string {
	return fmt.Sprintf("http://%s/namespace/%s/blobs/sha256:%s", k.Agents[i], KrakenNamespace, hex)
}

// Stop kills every process of the cluster.
func (k *KrakenCluster) Stop() { k.procs.stop() }

// sleep sleeps for d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
