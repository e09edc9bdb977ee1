package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/trust/egress"
)

// BenchmarkLazyReadInProcess is the mount scenario's cold sequential read
// without FUSE, in one process, for CPU profiles of the lazy data path (go
// test -run X -bench LazyReadInProcess -cpuprofile cpu.out ./testenv/bench):
// a fresh supernode (lazy seed) and a fresh peer; the peer opens the file
// lazily with prefetch off and reads it from start to end in 128 KiB reads
// (FUSE's request size), one at a time. Reported per piece: wall time and
// the process' CPU time (peer and supernode together). Sizes differ in
// piece count, not piece size (1 MiB), so a per-piece cost that grows with
// the count shows.
func BenchmarkLazyReadInProcess(b *testing.B) {
	for _, size := range []int64{128 * MiB, 512 * MiB, 1024 * MiB} {
		b.Run(fmt.Sprintf("%dMiB", size/MiB), func(b *testing.B) { benchLazyRead(b, size) })
	}
}

func benchLazyRead(b *testing.B, size int64) {
	origin := testenv.NewOrigin(b)
	origin.AddRandom("f.bin", size, 1)
	url := origin.URL("f.bin")
	log := logrus.New()
	log.SetOutput(io.Discard)
	pieces := manifest.NewLayout(size).NumPieces()
	b.SetBytes(size)
	b.ResetTimer()
	var cpu, wall float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
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
		peer, err := p2p.New(p2p.Config{DataDir: filepath.Join(b.TempDir(), "data"), Supernodes: []string{ln.Addr().String()},
			UploadListen: "127.0.0.1:0", Log: log})
		if err != nil {
			b.Fatal(err)
		}
		l, err := peer.OpenLazy(context.Background(), p2p.Request{URL: url}, p2p.LazyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		syscall.Sync()
		cpu0 := SelfCPUSeconds()
		start := time.Now()
		b.StartTimer()
		buf := make([]byte, 128<<10)
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := l.ReadAt(buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		wall += time.Since(start).Seconds()
		cpu += SelfCPUSeconds() - cpu0
		l.Close()
		peer.Close()
		srv.Close()
		sn.Close()
		b.StartTimer()
	}
	n := float64(b.N * pieces)
	b.ReportMetric(wall/n*1e3, "ms/piece")
	b.ReportMetric(cpu/n*1e3, "cpu-ms/piece")
}
