package supernode

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	registrations prometheus.Counter
	syncs         prometheus.Counter
	pieceReports  prometheus.Counter
	originBytes   prometheus.Counter
	servedBytes   prometheus.Counter
	rateLimited   prometheus.Counter
	// Scheduler decisions: parents handed out, registrations answered
	// with the seed alone, and bad-parent reports accepted.
	parentsAssigned prometheus.Counter
	seedOnly        prometheus.Counter
	badReports      prometheus.Counter
}

func newMetrics() *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "damselfly", Subsystem: "supernode", Name: name, Help: help})
	}
	return &metrics{
		registrations:   c("registrations_total", "Task registrations by peers."),
		syncs:           c("syncs_total", "Progress syncs by peers."),
		pieceReports:    c("piece_reports_total", "Finished pieces reported by peers."),
		originBytes:     c("origin_bytes_total", "Body bytes the seed read from origins."),
		servedBytes:     c("seed_served_bytes_total", "Piece bytes the seed served to peers."),
		rateLimited:     c("rate_limited_total", "Registrations refused (429) by the per-client rate limit."),
		parentsAssigned: c("parents_assigned_total", "Peer parents the scheduler handed out (registrations and syncs; the seed not counted)."),
		seedOnly:        c("seed_only_registrations_total", "Registrations answered with no peer parent, only the seed."),
		badReports:      c("bad_parent_reports_total", "Reports of failing parents accepted from peers of the task."),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.registrations, m.syncs, m.pieceReports, m.originBytes, m.servedBytes, m.rateLimited,
		m.parentsAssigned, m.seedOnly, m.badReports}
}
