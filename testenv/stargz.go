package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// StargzVersion is the stargz-snapshotter release the benchmarks compare
// with.
const StargzVersion = "v0.15.1"

// stargzMain is a containerd-stargz-grpc equivalent wired from the
// stargz-snapshotter module's own packages (service, keychain): the
// module's cmd/ tree is a separate module the Go module proxy does not
// serve. It runs the snapshotter with its defaults, as the release binary
// does without a config file; -no-background-fetch sets the one knob the
// benchmark turns.
const stargzMain = `package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/stargz-snapshotter/service"
	"github.com/containerd/stargz-snapshotter/service/keychain/dockerconfig"
	"google.golang.org/grpc"
)

func main() {
	address := flag.String("address", "/run/containerd-stargz-grpc/containerd-stargz-grpc.sock", "unix socket for containerd")
	root := flag.String("root", "/var/lib/containerd-stargz-grpc", "state directory")
	noBackground := flag.Bool("no-background-fetch", false, "disable the background fetch")
	flag.Parse()
	ctx := context.Background()
	var cfg service.Config
	cfg.Config.NoBackgroundFetch = *noBackground
	rs, err := service.NewStargzSnapshotterService(ctx, *root, &cfg, service.WithCredsFuncs(dockerconfig.NewDockerconfigKeychain(ctx)))
	if err != nil {
		log.Fatalf("snapshotter: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(*address), 0o700); err != nil {
		log.Fatal(err)
	}
	os.Remove(*address)
	ln, err := net.Listen("unix", *address)
	if err != nil {
		log.Fatal(err)
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(rs))
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		rpc.Stop()
		rs.Close()
		os.Exit(0)
	}()
	log.Printf("containerd-stargz-grpc (stargz-snapshotter %s) listening on %s", "` + StargzVersion + `", *address)
	if err := rpc.Serve(ln); err != nil {
		log.Fatal(err)
	}
}
`

// stargzPull pulls an image for stargz-snapshotter as ctr-remote rpull
// does: containerd's Pull with unpacking into the "stargz" snapshotter and
// the module's own source.AppendDefaultLabelsHandlerWrapper, which passes
// each layer's reference and digest to the snapshotter.
const stargzPull = `package main

import (
	"context"
	"flag"
	"log"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/remotes/docker/config"
	"github.com/containerd/stargz-snapshotter/fs/source"
)

func main() {
	address := flag.String("address", "/run/containerd/containerd.sock", "containerd socket")
	ns := flag.String("namespace", "default", "containerd namespace")
	plainHTTP := flag.Bool("plain-http", false, "reach the registry over plain HTTP")
	snapshotter := flag.String("snapshotter", "stargz", "snapshotter")
	flag.Parse()
	ref := flag.Arg(0)
	ctx := namespaces.WithNamespace(context.Background(), *ns)
	client, err := containerd.New(*address)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	hosts := config.HostOptions{}
	if *plainHTTP {
		hosts.DefaultScheme = "http"
	}
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: config.ConfigureHosts(ctx, hosts)})
	if _, err := client.Pull(ctx, ref, containerd.WithResolver(resolver), containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(*snapshotter),
		containerd.WithImageHandlerWrapper(source.AppendDefaultLabelsHandlerWrapper(ref, 0))); err != nil {
		log.Fatal(err)
	}
}
`

var stargzBuild struct {
	sync.Mutex
	path string
}

// StargzCacheDir is where built stargz-snapshotter binaries are kept,
// keyed by version, outside any checkout.
func StargzCacheDir() string {
	if d := os.Getenv("DAMSELFLY_CACHE"); d != "" {
		return filepath.Join(d, "stargz-snapshotter-"+StargzVersion)
	}
	home, err := os.UserCacheDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, "damselfly", "stargz-snapshotter-"+StargzVersion)
}

// BuildStargzSnapshotter builds containerd-stargz-grpc (and next to it
// stargz-pull, see StargzPullBin) from the github.com/containerd/stargz-snapshotter
// module at StargzVersion (through the Go module proxy) in a scratch
// module, once, and returns the cached binary's path.
func BuildStargzSnapshotter(ctx context.Context) (string, error) {
	stargzBuild.Lock()
	defer stargzBuild.Unlock()
	if stargzBuild.path != "" {
		return stargzBuild.path, nil
	}
	dir := StargzCacheDir()
	bin := filepath.Join(dir, "containerd-stargz-grpc")
	pull := StargzPullBin(bin)
	if fi, err := os.Stat(bin); err == nil && fi.Mode()&0o111 != 0 {
		if _, err := os.Stat(pull); err == nil {
			stargzBuild.path = bin
			return bin, nil
		}
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	for sub, text := range map[string]string{"grpc": stargzMain, "pull": stargzPull} {
		if err := os.MkdirAll(filepath.Join(src, sub), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(src, sub, "main.go"), []byte(text), 0o644); err != nil {
			return "", err
		}
	}
	os.Remove(filepath.Join(src, "main.go")) // an older layout
	goMod := "module damselfly.local/stargzbench\n\ngo 1.21\n\nrequire github.com/containerd/stargz-snapshotter " + StargzVersion + "\n"
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte(goMod), 0o644); err != nil {
		return "", err
	}
	goBin := "go"
	if p, err := exec.LookPath("go"); err == nil {
		goBin = p
	} else if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		goBin = "/usr/local/go/bin/go"
	}
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("mod", "tidy"); err != nil {
		return "", fmt.Errorf("build stargz-snapshotter %s: %w", StargzVersion, err)
	}
	if err := run("build", "-o", pull, "./pull"); err != nil {
		return "", fmt.Errorf("build stargz-snapshotter %s: %w", StargzVersion, err)
	}
	if err := run("build", "-o", bin+".tmp", "./grpc"); err != nil {
		return "", fmt.Errorf("build stargz-snapshotter %s: %w", StargzVersion, err)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		return "", err
	}
	stargzBuild.path = bin
	return bin, nil
}

// StargzPullBin is the stargz-pull binary built next to grpcBin.
func StargzPullBin(grpcBin string) string { return filepath.Join(filepath.Dir(grpcBin), "stargz-pull") }
