//go:build linux

package main

import (
	"bufio"
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// trends checks the samples after warm-up.
func trends(cfg config, samples []sample) []trend {
	var minutes, endpoints, rss, heap, goroutines []float64
	for _, s := range samples {
		if s.elapsed < cfg.warmup {
			continue
		}
		minutes = append(minutes, s.elapsed.Minutes())
		endpoints = append(endpoints, s.endpoints)
		rss = append(rss, s.rssBytes)
		heap = append(heap, s.heapInuse)
		goroutines = append(goroutines, s.goroutines)
	}
	return []trend{
		checkTrend("RSS", minutes, endpoints, rss, rssTolerance),
		checkTrend("heap in use", minutes, endpoints, heap, heapTolerance),
		checkTrend("goroutines", minutes, endpoints, goroutines, goroutineTolerance),
	}
}

// codeNames keys counts and examples by the code's name.
func codeNames(counts map[codes.Code]int64, examples map[codes.Code][]string) (map[string]int64, map[string][]string) {
	c := make(map[string]int64, len(counts))
	for k, v := range counts {
		c[k.String()] = v
	}
	e := make(map[string][]string, len(examples))
	for k, v := range examples {
		e[k.String()] = v
	}
	return c, e
}

// machine describes the machine in one line.
func machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			key, value, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(key) == "model name" {
				model = strings.TrimSpace(value)
				break
			}
		}
		f.Close()
	}
	return fmt.Sprintf("%s, %d CPUs, %s %s/%s", model, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// writeReport writes samples.csv, soak.png and summary.md to the output
// directory and the summary to stdout.
func writeReport(res *result, stdout io.Writer) error {
	if err := writeCSV(filepath.Join(res.cfg.out, "samples.csv"), res.samples); err != nil {
		return err
	}
	if len(res.samples) >= 2 {
		if err := writeChart(filepath.Join(res.cfg.out, "soak.png"), res.samples, res.cfg.warmup); err != nil {
			return fmt.Errorf("soak: chart: %w", err)
		}
	}
	summary := summarize(res)
	if err := os.WriteFile(filepath.Join(res.cfg.out, "summary.md"), []byte(summary), 0o644); err != nil {
		return err
	}
	_, err := io.WriteString(stdout, summary)
	return err
}

// rates are the per-second rates between a sample and the one before.
type rates struct {
	calls, failures, skipped, streamMessages, proxyRequests, proxyErrors float64
}

func ratesBetween(prev, s sample) rates {
	dt := (s.elapsed - prev.elapsed).Seconds()
	if dt <= 0 {
		return rates{}
	}
	return rates{
		calls:          float64(s.clientCalls-prev.clientCalls) / dt,
		failures:       float64(s.clientFailures-prev.clientFailures) / dt,
		skipped:        float64(s.skipped-prev.skipped) / dt,
		streamMessages: float64(s.streamMessages-prev.streamMessages) / dt,
		proxyRequests:  (s.proxyRequests - prev.proxyRequests) / dt,
		proxyErrors:    (s.proxyErrors - prev.proxyErrors) / dt,
	}
}

func writeCSV(path string, samples []sample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"elapsed_s", "rss_bytes", "heap_inuse_min_bytes", "goroutines_min", "backends_live",
		"calls_per_s", "failed_per_s", "skipped_per_s", "stream_messages_per_s", "proxy_requests_per_s", "proxy_errors_per_s",
		"calls_total", "failed_total", "proxy_endpoints", "proxy_endpoints_healthy", "proxy_in_flight",
		"goroutines_max", "heap_inuse_max_bytes"})
	format := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for i, s := range samples {
		var r rates
		if i > 0 {
			r = ratesBetween(samples[i-1], s)
		}
		_ = w.Write([]string{
			format(s.elapsed.Seconds()), format(s.rssBytes), format(s.heapInuse), format(s.goroutines), strconv.Itoa(s.live),
			format(r.calls), format(r.failures), format(r.skipped), format(r.streamMessages), format(r.proxyRequests), format(r.proxyErrors),
			strconv.FormatInt(s.clientCalls, 10), strconv.FormatInt(s.clientFailures, 10),
			format(s.endpoints), format(s.healthy), format(s.inFlight),
			format(s.goroutinesMax), format(s.heapInuseMax),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// summarize is the markdown summary.
func summarize(res *result) string {
	var b strings.Builder
	cfg := res.cfg
	elapsed := res.loadElapsed
	fmt.Fprintf(&b, "## Soak: quaestor under steady load and backend churn\n\n")
	fmt.Fprintf(&b, "- Machine: %s; load average at the end %s.\n", res.machine, loadAverage())
	fmt.Fprintf(&b, "- Run: %s of load (%d samples, every %s), warm-up %s not checked.\n", cfg.duration, len(res.samples), cfg.sampleEvery, cfg.warmup)
	fmt.Fprintf(&b, "- Load: %d unary calls/s offered (100 B, open loop, %d callers, %d connections, 2 s deadline) and %d server streams of 300 × 100 B responses 100 ms apart.\n",
		cfg.rate, cfg.callers, cfg.conns, cfg.streams)
	fmt.Fprintf(&b, "- Churn: an action every %s, %d to %d backend processes, at least %d serving; backend lease TTL %s.\n\n",
		cfg.churnEvery, cfg.minServing, cfg.maxBackends, cfg.minServing, cfg.leaseTTL)

	b.WriteString("| proxy | after warm-up | end | change | slope over time | per endpoint | allowed rise | flat |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, t := range res.trends {
		unit, scale := "", 1.0
		if t.name != "goroutines" {
			unit, scale = " MiB", 1<<20
		}
		if !t.checked {
			fmt.Fprintf(&b, "| %s | | | | | | | not checked: %s |\n", t.name, t.reason)
			continue
		}
		verdict := "yes"
		if !t.flat {
			verdict = "**no**: " + t.reason
		}
		fmt.Fprintf(&b, "| %s | %.1f%s | %.1f%s | %+.1f%s | %+.3f%s/min | %+.2f%s | %.1f%s | %s |\n",
			t.name, t.first/scale, unit, t.last/scale, unit, (t.last-t.first)/scale, unit, t.slopePerMinute/scale, unit,
			t.perEndpoint/scale, unit, t.allowed/scale, unit, verdict)
	}
	fmt.Fprintf(&b, "\nEach sample's heap and goroutines are the lowest of %d reads of /metrics over about a second (the floor a leak would raise; calls in flight and GC cycles only move the peaks); RSS is read from /proc once. The churn swings the number of endpoints in the proxy's table, and each costs some goroutines and memory: each series is fitted by least squares on time and on that number, the slope over time is the trend, \"per endpoint\" the fitted cost of one endpoint, and the values are adjusted to the window's mean endpoint count. After warm-up and at the end are medians of %d samples; the allowed rise is %s.\n\n", sampleReads, edgeSamples, toleranceText())

	var total, failed int64
	for code, n := range res.unary {
		total += n
		if code != codes.OK.String() {
			failed += n
		}
	}
	fmt.Fprintf(&b, "Unary calls: %d made (%.0f/s), %d failed (%.4f%%), %d offered but skipped (every caller busy).\n\n",
		total, perSecond(total, elapsed), failed, percent(failed, total), res.skipped)
	writeCodes(&b, "unary calls", res.unary, res.unaryEx)
	var streams int64
	for _, n := range res.streams {
		streams += n
	}
	fmt.Fprintf(&b, "Server streams: %d ended, %d responses received.\n\n", streams, res.streamMsg)
	writeCodes(&b, "server streams", res.streams, res.streamsEx)
	if res.profiled {
		if len(res.grown) == 0 {
			b.WriteString("No function runs in more of the proxy's goroutines at the end than after warm-up (goroutines-warm.txt, goroutines-end.txt).\n\n")
		} else {
			b.WriteString("Functions that more of the proxy's goroutines run at the end than after warm-up (one goroutine profile each, taken under load: calls in flight show here as noise; goroutines-warm.txt, goroutines-end.txt):\n\n| goroutines running | after warm-up | end |\n|---|---:|---:|\n")
			for _, g := range res.grown {
				fmt.Fprintf(&b, "| `%s` | %d | %d |\n", g.stack, g.warm, g.end)
			}
			b.WriteString("\n")
		}
	}
	if len(res.causes) > 0 {
		b.WriteString("| failed calls, by the churn action just before them | unary | streams |\n|---|---:|---:|\n")
		for _, cause := range slices.Sorted(maps.Keys(res.causes)) {
			fmt.Fprintf(&b, "| %s | %d | %d |\n", cause, res.causes[cause]["unary"], res.causes[cause]["stream"])
		}
		b.WriteString("\nEvery churn action and failed call, timed, is in events.csv.\n\n")
	}
	if len(res.metrics.requestsByCode) > 0 {
		b.WriteString("Proxy's own count (quaestor_proxy_requests_total, every method, at the last sample): ")
		var parts []string
		for _, code := range slices.Sorted(maps.Keys(res.metrics.requestsByCode)) {
			parts = append(parts, fmt.Sprintf("%s %.0f", code, res.metrics.requestsByCode[code]))
		}
		b.WriteString(strings.Join(parts, ", ") + ".\n\n")
	}
	b.WriteString("Churn actions: ")
	var parts []string
	for _, a := range slices.Sorted(maps.Keys(res.actions)) {
		parts = append(parts, fmt.Sprintf("%s %d", a, res.actions[a]))
	}
	b.WriteString(cmp.Or(strings.Join(parts, ", "), "none") + ".\n")
	for _, e := range res.churnErrs {
		fmt.Fprintf(&b, "- churn: %s\n", e)
	}
	if res.proxyDied != nil {
		fmt.Fprintf(&b, "\n**The proxy died during the soak: %v.**\n", res.proxyDied)
	}
	if res.stopErr != nil {
		fmt.Fprintf(&b, "\n**Stopping quaestor: %v.**\n", res.stopErr)
	}
	return b.String()
}

// writeCodes writes a table of counts by code, OK first, with examples of
// the failures.
func writeCodes(b *strings.Builder, what string, counts map[string]int64, examples map[string][]string) {
	if len(counts) == 0 {
		return
	}
	fmt.Fprintf(b, "| %s by code | count | example |\n|---|---:|---|\n", what)
	keys := slices.SortedFunc(maps.Keys(counts), func(a, b string) int {
		if (a == "OK") != (b == "OK") {
			if a == "OK" {
				return -1
			}
			return 1
		}
		return cmp.Compare(a, b)
	})
	for _, code := range keys {
		example := ""
		if ex := examples[code]; len(ex) > 0 {
			example = "`" + strings.ReplaceAll(ex[0], "|", "\\|") + "`"
		}
		fmt.Fprintf(b, "| %s | %d | %s |\n", code, counts[code], example)
	}
	b.WriteString("\n")
}

func toleranceText() string {
	return fmt.Sprintf("RSS %.0f MiB + %.0f%%, heap %.0f MiB + %.0f%%, goroutines %.0f + %.0f%% of the value after warm-up, for the least-squares rise over the window and for end minus after-warm-up",
		rssTolerance.abs/(1<<20), rssTolerance.rel*100, heapTolerance.abs/(1<<20), heapTolerance.rel*100, goroutineTolerance.abs, goroutineTolerance.rel*100)
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func percent(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}
