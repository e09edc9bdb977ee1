package metricsserve

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// HandlerGatherer gathers the metrics an http.Handler serves in the
// Prometheus text format: a library that serves its own registry behind
// authentication (the supernode's /metrics) joins the metrics listener's
// registry with prometheus.Gatherers{reg, HandlerGatherer{...}}, in
// process, without a network round trip.
type HandlerGatherer struct {
	Handler http.Handler
	// Path is the handler's metrics path (/metrics).
	Path string
	// Header is sent with each request (Authorization).
	Header http.Header
}

// Gather asks the handler for its metrics and parses them.
func (g HandlerGatherer) Gather() ([]*dto.MetricFamily, error) {
	req := httptest.NewRequest(http.MethodGet, g.Path, nil)
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	for k, vs := range g.Header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	g.Handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("gather %s: status %d", g.Path, rec.Code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		return nil, fmt.Errorf("parse the metrics of %s: %w", g.Path, err)
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}
