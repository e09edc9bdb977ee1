// Package peermetrics owns the Prometheus metrics of a host's peer (dfdaemon,
// and the embedded peers of dfmount and df-snapshotter) and of their FUSE
// mounts. It reads what the engine already exposes — finished downloads'
// byte counts by source, the piece store's tasks, the upload server's
// served bytes, cache GC — and observes FUSE reads through
// fusefs.Observer. It registers on the registry it is given, never the
// global one.
package peermetrics

import (
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/damselfly-p2p/damselfly/cmd/internal/metricsserve"
	"github.com/damselfly-p2p/damselfly/p2p"
)

// Sources are the values of the source label of the bytes counter.
var Sources = []string{"peers", "seed", "origin", "reused"}

// Peer holds one peer's metrics.
type Peer struct {
	bytes        *prometheus.CounterVec
	downloads    *prometheus.CounterVec
	active       prometheus.Gauge
	duration     prometheus.Histogram
	evictedTasks prometheus.Counter
	evictedBytes prometheus.Counter
}

// NewPeer registers the metrics of peer on reg. uploadSlots is the upload
// server's configured slot count (0: not reported).
func NewPeer(reg prometheus.Registerer, peer *p2p.Peer, uploadSlots int) *Peer {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsserve.Namespace, Subsystem: "peer", Name: name, Help: help}
	}
	m := &Peer{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts(opts("download_bytes_total",
			"Bytes of finished downloads by where they came from: peers, seed (the supernode), origin (directly), reused (already in the store).")), []string{"source"}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts(opts("downloads_total",
			"Downloads finished, by result (ok, error).")), []string{"result"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts(opts("downloads_active", "Downloads in progress."))),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsserve.Namespace, Subsystem: "peer",
			Name: "download_duration_seconds", Help: "Time a finished download took.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)}),
		evictedTasks: prometheus.NewCounter(prometheus.CounterOpts(opts("cache_evicted_tasks_total", "Tasks cache GC removed (TTL or quota)."))),
		evictedBytes: prometheus.NewCounter(prometheus.CounterOpts(opts("cache_evicted_bytes_total", "Bytes cache GC freed."))),
	}
	for _, s := range Sources {
		m.bytes.WithLabelValues(s)
	}
	m.downloads.WithLabelValues("ok")
	m.downloads.WithLabelValues("error")
	reg.MustRegister(m.bytes, m.downloads, m.active, m.duration, m.evictedTasks, m.evictedBytes)
	RegisterState(reg, peer, uploadSlots)
	return m
}

// RegisterState registers what can be read from a running peer at any
// time: its piece store (size, tasks, open tasks), the bytes its upload
// server served, and uploadSlots (0: not reported). dfmount and
// df-snapshotter use it for their embedded peer, whose lazy reads have no
// per-download results; NewPeer includes it. A nil peer registers nothing.
func RegisterState(reg prometheus.Registerer, peer *p2p.Peer, uploadSlots int) {
	if peer == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metricsserve.Namespace, Subsystem: "peer",
			Name: "upload_bytes_total", Help: "Piece bytes the upload server served to other peers."},
			func() float64 { return float64(peer.UploadedBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsserve.Namespace, Subsystem: "peer",
			Name: "upload_slots_in_use", Help: "Piece uploads running now."},
			func() float64 { in, _, _ := peer.UploadStats(); return float64(in) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metricsserve.Namespace, Subsystem: "peer",
			Name: "upload_busy_total", Help: "Piece requests turned away because every upload slot was in use."},
			func() float64 { _, _, r := peer.UploadStats(); return float64(r) }),
		&storeCollector{peer: peer})
	pieces := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metricsserve.Namespace, Subsystem: "peer",
		Name: "piece_duration_seconds", Help: "Time to fetch one piece from a parent, by source (peers, seed).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"source"})
	reg.MustRegister(pieces)
	peer.ObservePieces(func(source string, _ int, took time.Duration) {
		pieces.WithLabelValues(source).Observe(took.Seconds())
	})
	if uploadSlots > 0 {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsserve.Namespace, Subsystem: "peer",
			Name: "upload_slots", Help: "Concurrent piece uploads the upload server allows."},
			func() float64 { return float64(uploadSlots) }))
	}
}

// Started counts a download in progress; call the returned function with
// its outcome when it ends.
func (m *Peer) Started() (done func(*p2p.Result, error)) {
	m.active.Inc()
	return func(res *p2p.Result, err error) {
		m.active.Dec()
		m.Finished(res, err)
	}
}

// Finished records a download's outcome: its bytes by source and how long
// it took.
func (m *Peer) Finished(res *p2p.Result, err error) {
	if err != nil || res == nil {
		m.downloads.WithLabelValues("error").Inc()
		return
	}
	m.downloads.WithLabelValues("ok").Inc()
	m.bytes.WithLabelValues("peers").Add(float64(res.FromPeers))
	m.bytes.WithLabelValues("seed").Add(float64(res.FromSeed))
	m.bytes.WithLabelValues("origin").Add(float64(res.FromOrigin))
	m.bytes.WithLabelValues("reused").Add(float64(res.Reused))
	m.duration.Observe(res.Elapsed.Seconds())
}

// Evicted records a cache GC run's removals.
func (m *Peer) Evicted(tasks int, bytes int64) {
	m.evictedTasks.Add(float64(tasks))
	m.evictedBytes.Add(float64(bytes))
}

// storeCollector reads the piece store once per scrape.
type storeCollector struct{ peer *p2p.Peer }

var (
	cacheBytesDesc = prometheus.NewDesc(metricsserve.Namespace+"_peer_cache_bytes", "Bytes of the pieces in the piece store.", nil, nil)
	cacheTasksDesc = prometheus.NewDesc(metricsserve.Namespace+"_peer_cache_tasks", "Tasks in the piece store.", nil, nil)
	openTasksDesc  = prometheus.NewDesc(metricsserve.Namespace+"_peer_tasks_open", "Tasks open in this process: being downloaded, read or served.", nil, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cacheBytesDesc
	ch <- cacheTasksDesc
	ch <- openTasksDesc
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	list, err := c.peer.Store().List()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(cacheBytesDesc, err)
		return
	}
	var size int64
	open := 0
	for _, st := range list {
		size += st.BytesPresent
		if st.InUse {
			open++
		}
	}
	ch <- prometheus.MustNewConstMetric(cacheBytesDesc, prometheus.GaugeValue, float64(size))
	ch <- prometheus.MustNewConstMetric(cacheTasksDesc, prometheus.GaugeValue, float64(len(list)))
	ch <- prometheus.MustNewConstMetric(openTasksDesc, prometheus.GaugeValue, float64(open))
}

// FUSE holds a mount process's FUSE read metrics; it is a fusefs.Observer.
type FUSE struct {
	latency   prometheus.Histogram
	readBytes prometheus.Counter
	failed    *prometheus.CounterVec
}

// NewFUSE registers the FUSE read metrics on reg.
func NewFUSE(reg prometheus.Registerer) *FUSE {
	f := &FUSE{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsserve.Namespace, Subsystem: "fuse",
			Name: "read_duration_seconds", Help: "Latency of FUSE reads of file content (all outcomes).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		readBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsserve.Namespace, Subsystem: "fuse",
			Name: "read_bytes_total", Help: "Bytes FUSE reads returned."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsserve.Namespace, Subsystem: "fuse",
			Name: "read_errors_total", Help: "FUSE reads that failed, by errno (EIO: the bytes could not be had in time; EINTR: the reader gave up)."}, []string{"errno"}),
	}
	f.failed.WithLabelValues("EIO")
	f.failed.WithLabelValues("EINTR")
	reg.MustRegister(f.latency, f.readBytes, f.failed)
	return f
}

// Read records one FUSE read (fusefs.Observer).
func (f *FUSE) Read(d time.Duration, n int, errno syscall.Errno) {
	f.latency.Observe(d.Seconds())
	f.readBytes.Add(float64(n))
	switch errno {
	case 0:
	case syscall.EIO:
		f.failed.WithLabelValues("EIO").Inc()
	case syscall.EINTR:
		f.failed.WithLabelValues("EINTR").Inc()
	default:
		f.failed.WithLabelValues("other").Inc()
	}
}
