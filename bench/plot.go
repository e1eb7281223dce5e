package main

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"time"
)

// The plot of latency against offered load: x is the offered rate
// (linear), y the latency on a log scale (it spans from under a
// millisecond to seconds once a target is past its capacity); one colour
// per target, p50 as a solid line, p99 dashed.

const (
	plotWidth   = 1000
	plotHeight  = 620
	marginLeft  = 90
	marginRight = 200
	marginTop   = 60
	marginBot   = 70
	textScale   = 2
)

// targetColors are the lines' colours, in allTargets order.
var targetColors = map[string]color.RGBA{
	targetDirect:    {0x44, 0x44, 0x44, 0xff},
	targetQuaestor:  {0xd6, 0x27, 0x28, 0xff},
	targetGRPCProxy: {0x94, 0x67, 0xbd, 0xff},
	targetHAProxy:   {0x1f, 0x77, 0xb4, 0xff},
	targetNginx:     {0x2c, 0xa0, 0x2c, 0xff},
}

// plotLatency draws o as a PNG.
func plotLatency(o *openLoopResults) ([]byte, error) {
	type series struct {
		target string
		x      []float64
		p50    []float64 // ms
		p99    []float64
	}
	var all []series
	minY, maxY := math.Inf(1), math.Inf(-1)
	maxX := 0.0
	for _, t := range o.targets {
		s := series{target: t}
		for i, rate := range o.rates {
			p := o.point(t, i)
			if !p.ok || p.p50 <= 0 || p.p99 <= 0 {
				continue
			}
			s.x = append(s.x, rate)
			s.p50 = append(s.p50, ms(p.p50))
			s.p99 = append(s.p99, ms(p.p99))
			minY, maxY = math.Min(minY, ms(p.p50)), math.Max(maxY, ms(p.p99))
			maxX = math.Max(maxX, rate)
		}
		if len(s.x) > 0 {
			all = append(all, s)
		}
	}
	if len(all) == 0 {
		return nil, errors.New("no open-loop results to plot")
	}
	loDecade, hiDecade := math.Floor(math.Log10(minY)), math.Ceil(math.Log10(maxY))
	if hiDecade <= loDecade {
		hiDecade = loDecade + 1
	}
	xStep := niceStep(maxX / 5)
	xMax := math.Ceil(maxX/xStep) * xStep

	img := image.NewRGBA(image.Rect(0, 0, plotWidth, plotHeight))
	fillRect(img, 0, 0, plotWidth, plotHeight, color.White)
	left, right := marginLeft, plotWidth-marginRight
	top, bottom := marginTop, plotHeight-marginBot
	px := func(x float64) int { return left + int(math.Round(x/xMax*float64(right-left))) }
	py := func(y float64) int {
		f := (math.Log10(y) - loDecade) / (hiDecade - loDecade)
		return bottom - int(math.Round(f*float64(bottom-top)))
	}
	grid := color.RGBA{0xe0, 0xe0, 0xe0, 0xff}
	black := color.RGBA{0, 0, 0, 0xff}
	// Grid and tick labels.
	for d := loDecade; d <= hiDecade; d++ {
		for m := 1.0; m < 10; m++ {
			y := math.Pow(10, d) * m
			if m > 1 && d == hiDecade {
				break
			}
			c := grid
			if m == 1 {
				c = color.RGBA{0xb0, 0xb0, 0xb0, 0xff}
			}
			fillRect(img, left, py(y), right-left, 1, c)
		}
		label := formatTick(math.Pow(10, d))
		drawText(img, left-10-textWidth(label, textScale), py(math.Pow(10, d))-glyphHeight*textScale/2, label, textScale, black)
	}
	for x := 0.0; x <= xMax+xStep/2; x += xStep {
		fillRect(img, px(x), top, 1, bottom-top, grid)
		label := formatTick(x)
		drawText(img, px(x)-textWidth(label, textScale)/2, bottom+10, label, textScale, black)
	}
	fillRect(img, left, top, 2, bottom-top, black)
	fillRect(img, left, bottom, right-left, 2, black)
	title := "latency against offered load: unary 100 b, open loop"
	drawText(img, (left+right-textWidth(title, textScale))/2, 14, title, textScale, black)
	drawText(img, 10, top-24, "latency (ms, log)", textScale, black)
	xLabel := "offered load (calls/s)"
	drawText(img, (left+right-textWidth(xLabel, textScale))/2, bottom+40, xLabel, textScale, black)
	// Lines, then the legend.
	for _, s := range all {
		c := targetColors[s.target]
		for i := range s.x {
			fillRect(img, px(s.x[i])-3, py(s.p50[i])-3, 7, 7, c)
			fillRect(img, px(s.x[i])-2, py(s.p99[i])-2, 5, 5, c)
			if i > 0 {
				drawLine(img, px(s.x[i-1]), py(s.p50[i-1]), px(s.x[i]), py(s.p50[i]), c, false)
				drawLine(img, px(s.x[i-1]), py(s.p99[i-1]), px(s.x[i]), py(s.p99[i]), c, true)
			}
		}
	}
	ly := top
	for _, s := range all {
		c := targetColors[s.target]
		drawLine(img, right+15, ly+7, right+45, ly+7, c, false)
		drawText(img, right+52, ly, s.target, textScale, black)
		ly += 26
	}
	ly += 10
	drawLine(img, right+15, ly+7, right+45, ly+7, black, false)
	drawText(img, right+52, ly, "p50", textScale, black)
	ly += 26
	drawLine(img, right+15, ly+7, right+45, ly+7, black, true)
	drawText(img, right+52, ly, "p99", textScale, black)

	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// formatTick prints a tick value without trailing zeros.
func formatTick(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", v)
}

// drawLine draws a 2-pixel-wide line from (x0, y0) to (x1, y1), dashed
// (8 on, 6 off) when asked.
func drawLine(img *image.RGBA, x0, y0, x1, y1 int, c color.Color, dashed bool) {
	dx, dy := x1-x0, y1-y0
	steps := max(abs(dx), abs(dy), 1)
	for i := 0; i <= steps; i++ {
		if dashed && i%14 >= 8 {
			continue
		}
		x := x0 + int(math.Round(float64(dx*i)/float64(steps)))
		y := y0 + int(math.Round(float64(dy*i)/float64(steps)))
		fillRect(img, x, y, 2, 2, c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
