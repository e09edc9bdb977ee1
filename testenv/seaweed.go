//go:build unix

package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// SeaweedModule and SeaweedVersion name the SeaweedFS source that
// BuildSeaweed builds the S3 server from.
const (
	SeaweedModule  = "github.com/seaweedfs/seaweedfs"
	SeaweedVersion = "v0.0.0-20261109003541-7506e5f91cd6"
)

// SeaweedBinEnv names the environment variable that, when set, gives a
// prebuilt weed binary for SeaweedBinary to return instead of building.
const SeaweedBinEnv = "DAMSELFLY_SEAWEED_BIN"

// SeaweedRegion is the region Seaweed clients sign for (SeaweedFS accepts
// any).
const SeaweedRegion = "us-east-1"

// SeaweedCacheDir returns the directory holding the weed binary of
// SeaweedVersion: $XDG_CACHE_HOME (or $HOME/.cache)/damselfly/seaweedfs/VERSION,
// outside any clone so that every checkout shares one 7-minute build.
func SeaweedCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("seaweedfs cache dir: %w", err)
	}
	return filepath.Join(base, "damselfly", "seaweedfs", SeaweedVersion), nil
}

// BuildSeaweed returns the path of the weed binary of SeaweedVersion,
// building it first if the cache has none: `go mod download -json` of the
// module, a writable copy of its tree (its go.mod has replace directives, so
// it builds only from inside), and `nice -n 10 go build ./weed` there (about
// 7 minutes on 2 cores, 2.7 GB of memory, a 223 MiB binary). A lock file in
// the cache directory makes concurrent callers (tests of several packages,
// `make deps`) wait for one build instead of running two. Progress goes to
// log.
func BuildSeaweed(ctx context.Context, log io.Writer) (string, error) {
	dir, err := SeaweedCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "weed")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build seaweedfs: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("build seaweedfs: open lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(log, "seaweedfs: another build holds %s; waiting for it\n", lock.Name())
		if err := flockWait(ctx, lock); err != nil {
			return "", fmt.Errorf("build seaweedfs: wait for lock: %w", err)
		}
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if isExecutable(bin) { // built by whoever held the lock
		return bin, nil
	}
	start := time.Now()
	src, err := downloadSeaweed(ctx, dir, log)
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	fmt.Fprintf(log, "seaweedfs: building %s@%s in %s (about 7 minutes on 2 cores)\n", SeaweedModule, SeaweedVersion, src)
	tmp := bin + ".tmp"
	args := []string{"go", "build", "-o", tmp, "./weed"}
	if nice, err := exec.LookPath("nice"); err == nil {
		args = append([]string{nice, "-n", "10"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("build seaweedfs: go build ./weed in %s: %w", src, err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("build seaweedfs: %w", err)
	}
	fmt.Fprintf(log, "seaweedfs: built %s in %v\n", bin, time.Since(start).Round(time.Second))
	return bin, nil
}

// downloadSeaweed fetches the module source and copies it to a writable
// directory under dir, returned.
func downloadSeaweed(ctx context.Context, dir string, log io.Writer) (string, error) {
	mod := SeaweedModule + "@" + SeaweedVersion
	fmt.Fprintf(log, "seaweedfs: go mod download %s\n", mod)
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod)
	cmd.Dir = dir // outside any module
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build seaweedfs: go mod download %s: %w\n%s%s", mod, err, out, stderr.Bytes())
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("build seaweedfs: go mod download %s gave no directory (%v): %s%s", mod, err, info.Error, out)
	}
	src := filepath.Join(dir, "src")
	if err := os.RemoveAll(src); err != nil {
		return "", fmt.Errorf("build seaweedfs: clear %s: %w", src, err)
	}
	// CopyFS makes files 0666 and directories 0777 (less the umask): the
	// copy is writable, as the build needs, unlike the module cache.
	if err := os.CopyFS(src, os.DirFS(info.Dir)); err != nil {
		os.RemoveAll(src)
		return "", fmt.Errorf("build seaweedfs: copy %s to %s: %w", info.Dir, src, err)
	}
	return src, nil
}

// flockWait takes the exclusive lock on f, giving up when ctx ends.
func flockWait(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// SeaweedBinary returns the weed binary: $DAMSELFLY_SEAWEED_BIN if set,
// else the cached build, building it if need be (minutes; `make deps` builds
// it ahead). A failed build fails the test.
func SeaweedBinary(t TB) string {
	t.Helper()
	if bin := os.Getenv(SeaweedBinEnv); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			t.Fatalf("testenv: $%s: %v", SeaweedBinEnv, err)
		}
		return abs
	}
	var log bytes.Buffer
	bin, err := BuildSeaweed(context.Background(), &log)
	if err != nil {
		t.Fatalf("testenv: %v\n%s", err, log.Bytes())
	}
	return bin
}

// Seaweed is a running SeaweedFS server (master, volume, filer and S3
// gateway in one process) on loopback, with one identity allowed everything.
type Seaweed struct {
	// Endpoint is the S3 gateway's base URL; address buckets path-style.
	Endpoint string
	// AccessKeyID and SecretAccessKey are the identity's credentials.
	AccessKeyID     string
	SecretAccessKey string
	// Dir holds the server's data.
	Dir  string
	Proc *Proc

	client *s3.Client
}

// StartSeaweed starts `weed server` with its S3 gateway on free loopback
// ports, creates the given buckets and waits until the store takes writes
// (on a fresh directory the first write can take about 10 s while volumes
// are allocated). t.Cleanup kills it with SIGKILL (it ignores SIGTERM for
// 30 s). A server that does not come up fails the test.
func StartSeaweed(t TB, buckets ...string) *Seaweed {
	t.Helper()
	bin := SeaweedBinary(t)
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := startSeaweed(t, bin, buckets)
		if err == nil {
			return s
		}
		last = err
		if s != nil && !s.Proc.Exited() {
			break // running but not answering: another try would not help
		}
		t.Logf("testenv: seaweedfs attempt %d: %v; retrying with other ports", attempt+1, err)
	}
	t.Fatalf("testenv: start seaweedfs: %v", last)
	return nil
}

func startSeaweed(t TB, bin string, buckets []string) (*Seaweed, error) {
	dir := t.TempDir()
	s := &Seaweed{Dir: filepath.Join(dir, "data"), AccessKeyID: "damselfly-test", SecretAccessKey: "test-secret-" + strconv.FormatUint(rand.Uint64(), 36)}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		return nil, err
	}
	ids := map[string]any{"identities": []any{map[string]any{
		"name":        "damselfly-test",
		"credentials": []any{map[string]string{"accessKey": s.AccessKeyID, "secretKey": s.SecretAccessKey}},
		"actions":     []string{"Admin", "Read", "List", "Tagging", "Write"},
	}}}
	idsJSON, _ := json.Marshal(ids)
	idsPath := filepath.Join(dir, "identities.json")
	if err := os.WriteFile(idsPath, idsJSON, 0o600); err != nil {
		return nil, err
	}
	ports, err := seaweedPorts(4)
	if err != nil {
		return nil, err
	}
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", ports[3])
	s.Proc = Start(t, "", bin, "server", "-dir="+s.Dir, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port="+strconv.Itoa(ports[0]), "-volume.port="+strconv.Itoa(ports[1]),
		"-filer", "-filer.port="+strconv.Itoa(ports[2]),
		"-s3", "-s3.port="+strconv.Itoa(ports[3]), "-s3.config="+idsPath,
		"-s3.port.iceberg=0", "-s3.port.lance=0")
	s.client = s3.New(s3.Options{
		Region:                     SeaweedRegion,
		BaseEndpoint:               aws.String(s.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})

	// The gateway answers (403 to an anonymous GET) after about 2.5 s.
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		if s.Proc.Exited() {
			return s, fmt.Errorf("weed server exited before S3 answered: %s", s.Proc.Tail(20))
		}
		resp, err := client.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("S3 gateway %s not answering after 60s: %v", s.Endpoint, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	warm := "damselfly-warmup"
	for _, b := range append([]string{warm}, buckets...) {
		if err := retry(ctx, func() error {
			_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)})
			return err
		}); err != nil {
			return s, fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	if err := retry(ctx, func() error { return s.put(ctx, warm, "warmup", []byte("warm")) }); err != nil {
		return s, fmt.Errorf("first write: %w", err)
	}
	return s, nil
}

// retry calls f every 200 ms until it succeeds or ctx ends, and returns the
// last error then.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Seaweed) put(ctx context.Context, bucket, key string, data []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key),
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
	})
	return err
}

// Put stores data as bucket/key (retrying for up to 30 s, as a young
// server may refuse a write) and fails the test if it cannot.
func (s *Seaweed) Put(t TB, bucket, key string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := retry(ctx, func() error { return s.put(ctx, bucket, key, data) }); err != nil {
		t.Fatalf("testenv: seaweedfs put s3://%s/%s: %v", bucket, key, err)
	}
}

// Delete removes bucket/key and fails the test if it cannot.
func (s *Seaweed) Delete(t TB, bucket, key string) {
	t.Helper()
	if _, err := s.client.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		t.Fatalf("testenv: seaweedfs delete s3://%s/%s: %v", bucket, key, err)
	}
}

// seaweedPorts returns n distinct loopback TCP ports p, each with p+10000
// (the gRPC port SeaweedFS derives) free as well, a moment ago.
func seaweedPorts(n int) ([]int, error) {
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("no free pair of ports p and p+10000")
		}
		p := 20000 + rand.IntN(30000)
		a, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			a.Close()
			continue
		}
		held = append(held, a, b)
		ports = append(ports, p)
	}
	return ports, nil
}
