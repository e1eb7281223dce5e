//go:build linux

package main

import (
	"image/color"
	"math"
	"os"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// series is one line of a chart panel.
type series struct {
	name  string
	value func(i int) float64
	color color.Color
}

var (
	blue   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	green  = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	red    = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	grey   = color.RGBA{R: 128, G: 128, B: 128, A: 255}

	lightOrange = color.RGBA{R: 255, G: 187, B: 120, A: 255}
	lightGreen  = color.RGBA{R: 152, G: 223, B: 138, A: 255}
)

// writeChart draws the proxy's memory, goroutines, and the load and
// backends over time, one panel each, with the end of the warm-up marked.
func writeChart(path string, samples []sample, warmup time.Duration) error {
	rateAt := func(i int) rates {
		if i == 0 {
			return rates{}
		}
		return ratesBetween(samples[i-1], samples[i])
	}
	panels := []struct {
		title, unit string
		lines       []series
	}{
		{"proxy memory", "MiB", []series{
			{"RSS", func(i int) float64 { return samples[i].rssBytes / (1 << 20) }, blue},
			{"heap in use, lowest of the sample's reads", func(i int) float64 { return samples[i].heapInuse / (1 << 20) }, orange},
			{"heap in use, highest", func(i int) float64 { return samples[i].heapInuseMax / (1 << 20) }, lightOrange},
		}},
		{"proxy goroutines", "goroutines", []series{
			{"lowest of the sample's reads", func(i int) float64 { return samples[i].goroutines }, green},
			{"highest (calls in flight)", func(i int) float64 { return samples[i].goroutinesMax }, lightGreen},
		}},
		{"load", "per second", []series{
			{"unary calls", func(i int) float64 { return rateAt(i).calls }, blue},
			{"failed calls", func(i int) float64 { return rateAt(i).failures }, red},
		}},
		{"backends", "instances", []series{
			{"backend processes running", func(i int) float64 { return float64(samples[i].live) }, grey},
			{"endpoints in the proxy's table", func(i int) float64 { return samples[i].endpoints }, blue},
			{"of which healthy", func(i int) float64 { return samples[i].healthy }, green},
		}},
	}
	plots := make([][]*plot.Plot, len(panels))
	for row, panel := range panels {
		p := plot.New()
		p.Title.Text = panel.title
		p.Y.Label.Text = panel.unit
		p.Y.Min = 0
		if row == len(panels)-1 {
			p.X.Label.Text = "minutes since the load started"
		}
		p.Add(plotter.NewGrid())
		ymax := 1.0
		for _, s := range panel.lines {
			xys := make(plotter.XYs, len(samples))
			for i := range samples {
				xys[i] = plotter.XY{X: samples[i].elapsed.Minutes(), Y: s.value(i)}
				ymax = max(ymax, xys[i].Y)
			}
			line, err := plotter.NewLine(xys)
			if err != nil {
				return err
			}
			line.Color = s.color
			line.Width = vg.Points(1.5)
			p.Add(line)
			p.Legend.Add(s.name, line)
		}
		// Room above the curves for the legend.
		p.Y.Max = ymax * 1.6
		p.X.Tick.Marker = minuteTicks{}
		if warmup > 0 {
			mark, err := plotter.NewLine(plotter.XYs{{X: warmup.Minutes(), Y: 0}, {X: warmup.Minutes(), Y: p.Y.Max}})
			if err != nil {
				return err
			}
			mark.Color = grey
			mark.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(mark)
			if row == 0 {
				p.Legend.Add("end of warm-up", mark)
			}
		}
		p.Legend.Top = true
		p.Legend.Left = true
		plots[row] = []*plot.Plot{p}
	}
	img := vgimg.New(vg.Points(720), vg.Points(900))
	dc := draw.New(img)
	canvases := plot.Align(plots, draw.Tiles{
		Rows: len(plots), Cols: 1,
		PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(12),
	}, dc)
	for row := range plots {
		plots[row][0].Draw(canvases[row][0])
	}
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

// minuteTicks marks every minute (every 5 past 20 minutes), labelled.
type minuteTicks struct{}

func (minuteTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 1.0
	if hi-lo > 20 {
		step = 5
	}
	if hi-lo < 2 {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	var ticks []plot.Tick
	for m := math.Ceil(lo/step) * step; m <= hi; m += step {
		ticks = append(ticks, plot.Tick{Value: m, Label: strconv.FormatFloat(m, 'f', -1, 64)})
	}
	return ticks
}
