package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/httpserve"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/proxy"
)

// DefaultProxyListen is where the registry mirror listens by default.
const DefaultProxyListen = "127.0.0.1:65001"

// proxyFlags are dfdaemon's registry mirror and forward proxy flags.
type proxyFlags struct {
	listen, registry, rulesFile string
	insecure, rules             []string
	readTimeout                 time.Duration
	forward                     bool
}

func (o *proxyFlags) register(f *pflag.FlagSet) {
	f.StringVar(&o.listen, "proxy-listen", DefaultProxyListen, "address of the registry mirror (and of the forward proxy with --forward-proxy; \"\" turns it off)")
	f.StringVar(&o.registry, "registry", "https://registry-1.docker.io", "upstream registry of mirror requests that do not name one with containerd's ?ns= (scheme://host[:port])")
	f.StringSliceVar(&o.insecure, "insecure-registry", nil, "registry host[:port] reached over plain HTTP when a request names it with ?ns= (repeatable)")
	f.StringArrayVar(&o.rules, "proxy-rule", nil, "URL regex that goes P2P (\"REGEX\" or \"p2p:REGEX\") or straight to the upstream (\"direct:REGEX\"); first match wins, no match passes through; repeatable, in order (default: registry blobs go P2P)")
	f.StringVar(&o.rulesFile, "proxy-rules-file", "", "JSON file of rules, as the classic dfdaemon's proxies list: {\"proxies\": [{\"regx\": \"blobs/sha256.*\"}, {\"regx\": \"no-p2p\", \"direct\": true}]} (before --proxy-rule ones)")
	f.BoolVar(&o.forward, "forward-proxy", false, "also serve the mirror port as a plain HTTP forward proxy (absolute URLs, --proxy-rule) and CONNECT tunnel; off by default, since whoever reaches the port could fetch or tunnel to anything this host reaches")
	f.DurationVar(&o.readTimeout, "proxy-read-timeout", 60*time.Second, "abort a P2P blob response when its next pieces take longer than this")
}

// start starts the proxy server unless it is turned off. A default
// address that is taken only disables the proxy (with an error in the
// log); an address the user chose must work.
func (o *proxyFlags) start(cmd *cobra.Command, peer *p2p.Peer, log *logrus.Logger) (stop func(), err error) {
	if o.listen == "" {
		log.Info("registry mirror off (--proxy-listen=\"\")")
		return func() {}, nil
	}
	var rules []proxy.Rule
	if o.rulesFile != "" {
		if rules, err = proxy.LoadRules(o.rulesFile); err != nil {
			return nil, err
		}
	}
	for _, s := range o.rules {
		r, err := proxy.ParseRule(s)
		if err != nil {
			return nil, fmt.Errorf("--proxy-rule: %w", err)
		}
		rules = append(rules, r)
	}
	px, err := proxy.New(proxy.Config{Peer: peer, Registry: o.registry, Insecure: o.insecure, Rules: rules,
		ReadTimeout: o.readTimeout, ForwardProxy: o.forward, Log: log})
	if err != nil {
		return nil, fmt.Errorf("registry mirror: %w", err)
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) && !cmd.Flags().Changed("proxy-listen") {
			log.WithError(err).Errorf("registry mirror NOT started: %s is in use (another dfdaemon?); pass --proxy-listen ADDR to use another address, or --proxy-listen=\"\" to turn it off", o.listen)
			return func() {}, nil
		}
		return nil, fmt.Errorf("registry mirror: listen on %s: %w", o.listen, err)
	}
	// Bodies are forwarded as they come (forward-proxy uploads), not read
	// ahead; writes and idle connections are bounded.
	srv := httpserve.Server(px, httpserve.Limits{Body: -1})
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("registry mirror stopped")
		}
	}()
	log.WithFields(logrus.Fields{"listen": ln.Addr().String(), "registry": o.registry, "rules": len(rules)}).WithField("forwardProxy", o.forward).Info("registry mirror ready")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		px.Close()
	}, nil
}
