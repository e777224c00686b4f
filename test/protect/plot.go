package main

import (
	"fmt"
	"image/color"
	"os"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	colOffered  = color.RGBA{R: 120, G: 120, B: 120, A: 255}
	colAdmitted = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	colGood     = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	colRejected = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	colFailed   = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	colHigh     = color.RGBA{R: 148, G: 103, B: 189, A: 255}
	colLow      = color.RGBA{R: 140, G: 86, B: 75, A: 255}
	colGuide    = color.RGBA{R: 0, G: 0, B: 0, A: 110}
)

// writePlot draws two panels over the seconds of the run: requests/s
// (offered, admitted, goodput, rejected, errors + timeouts) with the
// measured capacity, and the p99 of admitted latency per priority (log
// scale) with the goodput bound and 3 × the no-load p99. Dashed vertical
// lines mark the phases.
func writePlot(path string, rows []*second, s *summary) error {
	rates := plot.New()
	rates.Title.Text = fmt.Sprintf("%s — %d workers × %s, capacity %.0f req/s, overload %.3g×", s.Policy, s.Workers, s.Service, s.CapacityRPS, s.Overload)
	rates.Y.Label.Text = "requests/s (by intended send second)"
	rates.Legend.Top, rates.Legend.Left = true, true
	series := func(f func(*second) float64) plotter.XYs {
		xy := make(plotter.XYs, len(rows))
		for i, r := range rows {
			xy[i] = plotter.XY{X: float64(r.sec) + 0.5, Y: f(r)}
		}
		return xy
	}
	maxY := 0.0
	for _, l := range []struct {
		name string
		c    color.Color
		f    func(*second) float64
	}{
		{"offered", colOffered, func(r *second) float64 { return float64(r.offered) }},
		{"admitted", colAdmitted, func(r *second) float64 { return float64(r.admitted) }},
		{"goodput", colGood, func(r *second) float64 { return float64(r.good) }},
		{"rejected", colRejected, func(r *second) float64 { return float64(r.rejected) }},
		{"errors+timeouts", colFailed, func(r *second) float64 { return float64(r.errors + r.timeouts) }},
	} {
		xy := series(l.f)
		for _, p := range xy {
			maxY = max(maxY, p.Y)
		}
		if err := addLine(rates, l.name, l.c, xy, false); err != nil {
			return err
		}
	}
	capLine := plotter.XYs{{X: 0, Y: s.CapacityRPS}, {X: float64(len(rows)), Y: s.CapacityRPS}}
	if err := addLine(rates, "capacity", colGuide, capLine, true); err != nil {
		return err
	}
	rates.Y.Min, rates.Y.Max = 0, max(maxY, s.CapacityRPS)*1.05

	lat := plot.New()
	lat.Y.Label.Text = "admitted p99, ms (log)"
	lat.X.Label.Text = "second of the run"
	lat.Y.Scale, lat.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	lat.Legend.Top, lat.Legend.Left = true, true
	const floor = 0.1 // ms: the log scale cannot show 0
	lo, hi := s.NoLoadP50ms, 3*s.NoLoadP99ms
	for _, l := range []struct {
		name string
		c    color.Color
		lat  func(*second) []float64
	}{
		{"p99 high", colHigh, func(r *second) []float64 { return latOf(r.latHigh) }},
		{"p99 low", colLow, func(r *second) []float64 { return latOf(r.latLow) }},
	} {
		var xy plotter.XYs
		for _, r := range rows {
			if v := l.lat(r); len(v) > 0 {
				xy = append(xy, plotter.XY{X: float64(r.sec) + 0.5, Y: max(v[0], floor)})
				lo, hi = min(lo, max(v[0], floor)), max(hi, v[0])
			}
		}
		if len(xy) == 0 {
			continue
		}
		if err := addLine(lat, l.name, l.c, xy, false); err != nil {
			return err
		}
	}
	for _, g := range []struct {
		name string
		y    float64
		c    color.Color
	}{{"goodput bound", s.GoodBoundMs, colGood}, {"3 × no-load p99", 3 * s.NoLoadP99ms, colFailed}} {
		if g.y <= 0 {
			continue
		}
		if err := addLine(lat, g.name, g.c, plotter.XYs{{X: 0, Y: g.y}, {X: float64(len(rows)), Y: g.y}}, true); err != nil {
			return err
		}
		lo, hi = min(lo, g.y), max(hi, g.y)
	}
	lat.Y.Min, lat.Y.Max = max(lo/1.5, floor), hi*1.5

	for _, p := range []*plot.Plot{rates, lat} {
		p.X.Min, p.X.Max = 0, float64(len(rows))
		for _, r := range rows[1:] {
			if r.phase != rows[r.sec-1].phase {
				b := float64(r.sec)
				if err := addLine(p, "", colGuide, plotter.XYs{{X: b, Y: p.Y.Min}, {X: b, Y: p.Y.Max}}, true); err != nil {
					return err
				}
			}
		}
	}

	img := vgimg.New(12*vg.Inch, 8*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	plots := [][]*plot.Plot{{rates}, {lat}}
	canvases := plot.Align(plots, tiles, dc)
	rates.Draw(canvases[0][0])
	lat.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// latOf is the p99 of sorted latencies in ms, as a one-element slice, or
// none.
func latOf(sorted []time.Duration) []float64 {
	if len(sorted) == 0 {
		return nil
	}
	return []float64{ms(quantile(sorted, 0.99))}
}

func addLine(p *plot.Plot, name string, c color.Color, xy plotter.XYs, dashed bool) error {
	l, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	l.Color = c
	l.Width = vg.Points(1.5)
	if dashed {
		l.Width = vg.Points(1)
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	p.Add(l)
	if name != "" {
		p.Legend.Add(name, l)
	}
	return nil
}
