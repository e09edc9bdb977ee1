package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/trust/egress"
)

// BenchmarkDownloadInProcess is the single-client scenario in one process,
// for CPU profiles of the data path (go test -bench DownloadInProcess
// -cpuprofile cpu.out ./testenv/bench): a peer downloads a 64 MiB file from
// an uncapped local origin through a supernode, whose seed is cold (fresh
// supernode, fetching from the origin while serving) or warm (already
// holding the file, from one earlier download).
func BenchmarkDownloadInProcess(b *testing.B) {
	const size = 64 * MiB
	origin := testenv.NewOrigin(b)
	origin.AddRandom("f.bin", size, 1)
	url := origin.URL("f.bin")
	log := logrus.New()
	log.SetOutput(io.Discard)

	startSupernode := func(b *testing.B) (addr string, stop func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		policy, err := egress.New(egress.Options{Allow: []string{origin.Addr()}})
		if err != nil {
			b.Fatal(err)
		}
		sn, err := supernode.New(supernode.Config{DataDir: b.TempDir(), AdvertiseAddr: ln.Addr().String(), Log: log, Egress: policy})
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: sn.Handler()}
		go srv.Serve(ln)
		return ln.Addr().String(), func() { srv.Close(); sn.Close() }
	}
	download := func(b *testing.B, addr string) {
		dir, err := os.MkdirTemp(b.TempDir(), "peer")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		peer, err := p2p.New(p2p.Config{DataDir: filepath.Join(dir, "data"), Supernodes: []string{addr},
			UploadListen: "127.0.0.1:0", Log: log})
		if err != nil {
			b.Fatal(err)
		}
		defer peer.Close()
		res, err := peer.Download(context.Background(), p2p.Request{URL: url, Output: filepath.Join(dir, "out")})
		if err != nil {
			b.Fatal(err)
		}
		if res.BackToSource {
			b.Fatal("went back to source")
		}
	}

	// Each iteration gets a fresh supernode: the seed's super-seeding
	// fan-out limit (upload.WithFanout) would otherwise make every download
	// after the second wait for peers that have already left.
	b.Run("warm", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			addr, stop := startSupernode(b)
			download(b, addr) // fills the seed
			b.StartTimer()
			download(b, addr)
			b.StopTimer()
			stop()
			b.StartTimer()
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			addr, stop := startSupernode(b)
			b.StartTimer()
			download(b, addr)
			b.StopTimer()
			stop()
			b.StartTimer()
		}
	})
}
