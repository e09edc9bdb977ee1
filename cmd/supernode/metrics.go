package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/damselfly-p2p/damselfly/cmd/internal/metricsserve"
	"github.com/damselfly-p2p/damselfly/trust"
)

// supernodeGatherer gathers the process's runtime metrics and the
// supernode's own, which its handler serves at /metrics to the admin token
// (else the cluster token): the metrics listener asks the handler in
// process, so --metrics-listen needs no token while the main port's
// /metrics still does.
func supernodeGatherer(h http.Handler, admin, cluster trust.Secret) prometheus.Gatherer {
	hdr := http.Header{}
	for _, s := range []trust.Secret{admin, cluster} {
		if !s.IsZero() {
			hdr.Set("Authorization", "Bearer "+s.Reveal())
			break
		}
	}
	return prometheus.Gatherers{metricsserve.NewRegistry(), metricsserve.HandlerGatherer{Handler: h, Path: "/metrics", Header: hdr}}
}
