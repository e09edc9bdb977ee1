package bench

import (
	"fmt"
	"image/color"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// PlotSwarm draws completion time against N (log-scaled time): the last
// peer and the median peer of the P2P runs, the direct downloads, the
// Kumar–Ross bound and the origin-alone time N*F/u_s; it writes a PNG to
// path.
func PlotSwarm(rep *SwarmReport, path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Swarm completion vs N (F=%s, u_s=%s/s, u=%s/s, d=%s/s)",
		fmtMiB(rep.Config.FileSize), fmtMiB(rep.Config.OriginCap), fmtMiB(rep.Config.Upload), fmtMiB(rep.Config.Download))
	p.X.Label.Text = "N (peers)"
	p.Y.Label.Text = "completion time (s, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())

	var last, p50, bound, cs, direct plotter.XYs
	for _, r := range rep.Runs {
		x := float64(r.N)
		if r.Last > 0 && r.Failed == 0 {
			last = append(last, plotter.XY{X: x, Y: r.Last})
		}
		if r.PerPeer.N > 0 {
			p50 = append(p50, plotter.XY{X: x, Y: r.PerPeer.P50})
		}
		bound = append(bound, plotter.XY{X: x, Y: r.TMin})
		cs = append(cs, plotter.XY{X: x, Y: r.ClientServer})
		if r.Direct != nil {
			direct = append(direct, plotter.XY{X: x, Y: *r.Direct})
		}
	}
	series := []struct {
		name  string
		xys   plotter.XYs
		color color.Color
		dash  []vg.Length
		shape draw.GlyphDrawer
	}{
		{"P2P: last peer", last, plotutil.Color(0), nil, draw.CircleGlyph{}},
		{"P2P: median peer", p50, plotutil.Color(1), nil, draw.SquareGlyph{}},
		{"direct HTTP (measured)", direct, plotutil.Color(2), nil, draw.TriangleGlyph{}},
		{"Kumar-Ross bound T_min", bound, color.Black, []vg.Length{vg.Points(4), vg.Points(3)}, draw.CrossGlyph{}},
		{"origin alone N*F/u_s", cs, plotutil.Color(4), []vg.Length{vg.Points(1), vg.Points(3)}, draw.PlusGlyph{}},
	}
	for _, s := range series {
		if len(s.xys) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(s.xys)
		if err != nil {
			return err
		}
		l.Color, l.Dashes, l.Width = s.color, s.dash, vg.Points(1.5)
		pts.Color, pts.Shape, pts.Radius = s.color, s.shape, vg.Points(3)
		p.Add(l, pts)
		p.Legend.Add(s.name, l, pts)
	}
	return p.Save(20*vg.Centimeter, 14*vg.Centimeter, path)
}

// PlotSwarmCDF draws, for each N, the fraction of peers done against time
// since their start, and writes a PNG to path.
func PlotSwarmCDF(rep *SwarmReport, path string) error {
	p := plot.New()
	p.Title.Text = "Per-peer completion CDF"
	p.X.Label.Text = "time since the peer started (s)"
	p.Y.Label.Text = "fraction of peers done"
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	for i, r := range rep.Runs {
		var xs []float64
		for _, s := range r.PeerSeconds {
			if s >= 0 {
				xs = append(xs, s)
			}
		}
		if len(xs) == 0 {
			continue
		}
		sort.Float64s(xs)
		xys := make(plotter.XYs, 0, 2*len(xs)+1)
		xys = append(xys, plotter.XY{X: xs[0], Y: 0})
		for k, x := range xs {
			xys = append(xys, plotter.XY{X: x, Y: float64(k) / float64(r.N)}, plotter.XY{X: x, Y: float64(k+1) / float64(r.N)})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color, l.Width = plotutil.Color(i), vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("N=%d", r.N), l)
		if r.TMin > 0 && !math.IsInf(r.TMin, 0) && i == len(rep.Runs)-1 {
			b, err := plotter.NewLine(plotter.XYs{{X: r.TMin, Y: 0}, {X: r.TMin, Y: 1}})
			if err != nil {
				return err
			}
			b.Color, b.Dashes = color.Black, []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(b)
			p.Legend.Add(fmt.Sprintf("T_min (N=%d)", r.N), b)
		}
	}
	return p.Save(20*vg.Centimeter, 14*vg.Centimeter, path)
}

// PlotSingle draws curl against dfget (cold and warm supernode) as bars of
// median seconds and writes a PNG to path.
func PlotSingle(rep *SingleReport, path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Single client, %s file (lower is better)", fmtMiB(rep.Config.FileSize))
	p.Y.Label.Text = "seconds (median)"
	bars, err := plotter.NewBarChart(plotter.Values{rep.Curl, rep.Cold, rep.Warm}, vg.Points(40))
	if err != nil {
		return err
	}
	bars.Color = plotutil.Color(0)
	p.Add(plotter.NewGrid(), bars)
	p.NominalX("curl", "dfget (cold supernode)", "dfget (warm supernode)")
	p.Y.Min, p.Y.Max = 0, 1.15*math.Max(rep.Curl, math.Max(rep.Cold, rep.Warm))
	return p.Save(14*vg.Centimeter, 10*vg.Centimeter, path)
}

// PlotSwarmProgress draws, for each N, the share of all the bytes the
// swarm must receive that its peers hold, against time since the first
// start, with the ideal min(1, t/T_min) of a swarm running at the bound;
// it writes a PNG to path.
func PlotSwarmProgress(rep *SwarmReport, path string) error {
	p := plot.New()
	p.Title.Text = "Swarm progress: share of N*F held by the peers"
	p.X.Label.Text = "time since the first peer started (s)"
	p.Y.Label.Text = "share of all bytes delivered"
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	tmax := 0.0
	for i, r := range rep.Runs {
		if len(r.Progress) == 0 || r.NumPieces == 0 {
			continue
		}
		xys := make(plotter.XYs, 0, len(r.Progress)+1)
		xys = append(xys, plotter.XY{})
		for _, pt := range r.Progress {
			xys = append(xys, plotter.XY{X: pt.T, Y: float64(pt.Pieces) / float64(r.N*r.NumPieces)})
			tmax = math.Max(tmax, pt.T)
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color, l.Width = plotutil.Color(i), vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("N=%d", r.N), l)
	}
	if n := len(rep.Runs); n > 0 && rep.Runs[n-1].TMin > 0 && tmax > 0 {
		tm := rep.Runs[n-1].TMin
		ideal, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: tm, Y: 1}, {X: math.Max(tm, tmax), Y: 1}})
		if err != nil {
			return err
		}
		ideal.Color, ideal.Dashes = color.Black, []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(ideal)
		p.Legend.Add(fmt.Sprintf("at the bound (T_min=%.0fs, N=%d)", tm, rep.Runs[n-1].N), ideal)
	}
	return p.Save(20*vg.Centimeter, 14*vg.Centimeter, path)
}
