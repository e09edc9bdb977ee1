// Package metricsserve owns the daemons' metrics listener: the
// --metrics-listen and --pprof flags, a per-process Prometheus registry
// (never the global default one), and the small HTTP server that serves
// /metrics and, with --pprof, /debug/pprof on that listener. The listener is
// unauthenticated, so it is off by default and a non-loopback address is
// logged as a warning.
package metricsserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/httpserve"
)

// Namespace prefixes every Damselfly metric name.
const Namespace = "damselfly"

// Options are the metrics listener flags.
type Options struct {
	// Listen is --metrics-listen: HOST:PORT of the listener; empty: off.
	Listen string
	// Pprof is --pprof: also serve /debug/pprof on the listener.
	Pprof bool
}

// Register adds --metrics-listen and --pprof to f, writing into o.
func (o *Options) Register(f *pflag.FlagSet) {
	f.StringVar(&o.Listen, "metrics-listen", "", "HOST:PORT that serves Prometheus /metrics (unauthenticated: keep it on loopback or behind a NetworkPolicy; empty: off)")
	f.BoolVar(&o.Pprof, "pprof", false, "also serve /debug/pprof on --metrics-listen (CPU and heap profiles: same care as the metrics)")
}

// NewRegistry returns a registry for one process, holding the Go runtime
// and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves /metrics from g and, when pprof is set, /debug/pprof.
func Handler(g prometheus.Gatherer, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Server is a running metrics listener.
type Server struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// Addr is the address the listener is bound to ("" when off).
func (s *Server) Addr() string {
	if s == nil {
		return ""
	}
	return s.addr
}

// Close stops the listener, waiting at most a few seconds for scrapes in
// flight. A nil Server (metrics off) closes as a no-op.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// Start serves g on o.Listen. With o.Listen empty it returns a nil Server
// (Close is then a no-op). A listener that is not on loopback is logged as
// a warning: it is unauthenticated.
func Start(o Options, g prometheus.Gatherer, log logrus.FieldLogger) (*Server, error) {
	if o.Listen == "" {
		if o.Pprof && log != nil {
			log.Warn("--pprof has no effect without --metrics-listen")
		}
		return nil, nil
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: listen on %s: %w", o.Listen, err)
	}
	s := &Server{addr: ln.Addr().String(), done: make(chan struct{})}
	// No write deadline: /debug/pprof/profile?seconds=N answers after N
	// seconds. Scrapes send no body; headers are bounded.
	s.srv = &http.Server{Handler: Handler(g, o.Pprof), ReadHeaderTimeout: httpserve.DefaultReadHeader, IdleTimeout: httpserve.DefaultIdle}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && log != nil {
			log.WithError(err).Error("metrics listener stopped")
		}
	}()
	if log != nil {
		fields := logrus.Fields{"listen": s.addr, "pprof": o.Pprof}
		if !Loopback(s.addr) {
			log.WithFields(fields).Warn("metrics listener is not on loopback and has no authentication: restrict who reaches it (firewall, Kubernetes NetworkPolicy)")
		} else {
			log.WithFields(fields).Info("metrics listener ready")
		}
	}
	return s, nil
}

// Loopback reports whether addr (HOST:PORT) is bound to a loopback IP.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
