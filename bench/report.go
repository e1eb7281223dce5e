package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// runInfo describes the run, for the report's header.
type runInfo struct {
	date       time.Time
	goVersion  string
	gomaxprocs int
	numCPU     int
	cpuModel   string
	command    string
	// loadStart and loadEnd are the load averages before and after the
	// measurements.
	loadStart string
	loadEnd   string
	rounds    int
	backends  int
	settings  loadSettings
}

// measurements holds the result of every round of every scenario and
// target.
type measurements struct {
	scenarios []scenario
	targets   []string
	rounds    int
	// results[key][round] is nil for rounds not run (an interrupted run).
	results map[measurementKey][]*result
}

type measurementKey struct{ scenario, target string }

func newMeasurements(scenarios []scenario, targets []string, rounds int) *measurements {
	m := &measurements{scenarios: scenarios, targets: targets, rounds: rounds, results: make(map[measurementKey][]*result)}
	for _, sc := range scenarios {
		for _, t := range targets {
			m.results[measurementKey{sc.name, t}] = make([]*result, rounds)
		}
	}
	return m
}

func (m *measurements) set(sc scenario, target string, round int, res *result) {
	m.results[measurementKey{sc.name, target}][round] = res
}

// throughput is the figure a scenario is compared by: calls/s for unary
// calls, MiB/s for streams.
func throughput(sc scenario, res *result) float64 {
	if sc.kind == serverStreamCall {
		return res.mebibytesPerSecond()
	}
	return res.callsPerSecond()
}

// summary is one row of a table: medians over the rounds.
type summary struct {
	throughput     float64
	minThroughput  float64
	maxThroughput  float64
	messagesPerSec float64
	cores          float64
	// cpuPerWork is the CPU time per call (unary) or per MiB (streams).
	cpuPerWork time.Duration
	// vsDirect and vsGRPCProxy are the medians of the per-round ratios of
	// throughput; NaN when the other target was not measured.
	vsDirect    float64
	vsGRPCProxy float64
	callP50     time.Duration
	callP99     time.Duration
	msgP50      time.Duration
	msgP99      time.Duration
	errors      int64 // over all rounds
	samples     []string
}

func (m *measurements) summarize(sc scenario, target string) summary {
	rounds := m.results[measurementKey{sc.name, target}]
	var (
		tput, msgs, cores, vsDirect, vsBaseline []float64
		callP50, callP99, msgP50, msgP99        []float64
		cpuPerWork                              []float64
		s                                       summary
	)
	ratio := func(other string, round int, own float64) (float64, bool) {
		o, ok := m.results[measurementKey{sc.name, other}]
		if !ok || o[round] == nil {
			return 0, false
		}
		if t := throughput(sc, o[round]); t > 0 {
			return own / t, true
		}
		return 0, false
	}
	for round, res := range rounds {
		if res == nil {
			continue
		}
		own := throughput(sc, res)
		tput = append(tput, own)
		msgs = append(msgs, res.messagesPerSecond())
		if c := res.cores(); !math.IsNaN(c) {
			cores = append(cores, c)
		}
		perWork := res.cpuPerCall()
		if sc.kind == serverStreamCall {
			perWork = res.cpuPerMiB()
		}
		if perWork > 0 {
			cpuPerWork = append(cpuPerWork, float64(perWork))
		}
		if r, ok := ratio(targetDirect, round, own); ok {
			vsDirect = append(vsDirect, r)
		}
		if r, ok := ratio(targetGRPCProxy, round, own); ok {
			vsBaseline = append(vsBaseline, r)
		}
		callP50 = append(callP50, float64(res.callLatency.quantile(0.50)))
		callP99 = append(callP99, float64(res.callLatency.quantile(0.99)))
		msgP50 = append(msgP50, float64(res.messageGap.quantile(0.50)))
		msgP99 = append(msgP99, float64(res.messageGap.quantile(0.99)))
		s.errors += res.errors
		for _, msg := range res.errorSamples {
			if len(s.samples) < maxErrorSamples && !slices.Contains(s.samples, msg) {
				s.samples = append(s.samples, msg)
			}
		}
	}
	s.throughput = median(tput)
	if len(tput) > 0 {
		s.minThroughput, s.maxThroughput = slices.Min(tput), slices.Max(tput)
	}
	s.messagesPerSec = median(msgs)
	s.cores = median(cores)
	s.cpuPerWork = durationOrZero(median(cpuPerWork))
	s.vsDirect = median(vsDirect)
	s.vsGRPCProxy = median(vsBaseline)
	s.callP50 = durationOrZero(median(callP50))
	s.callP99 = durationOrZero(median(callP99))
	s.msgP50 = durationOrZero(median(msgP50))
	s.msgP99 = durationOrZero(median(msgP99))
	return s
}

// median returns the median of xs, NaN when there are none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// durationOrZero converts a median of durations, 0 for NaN (none).
func durationOrZero(v float64) time.Duration {
	if math.IsNaN(v) {
		return 0
	}
	return time.Duration(v)
}

// writeReport writes the run's header and one markdown table per scenario.
func writeReport(w io.Writer, info runInfo, m *measurements) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# quaestor benchmark\n\n")
	fmt.Fprintf(&b, "- date: %s\n", info.date.Format(time.RFC3339))
	fmt.Fprintf(&b, "- go: `%s`\n", info.goVersion)
	fmt.Fprintf(&b, "- GOMAXPROCS: %d (logical CPUs: %d)\n", info.gomaxprocs, info.numCPU)
	fmt.Fprintf(&b, "- CPU: %s\n", info.cpuModel)
	fmt.Fprintf(&b, "- command: `%s`\n", info.command)
	fmt.Fprintf(&b, "- load average (1, 5, 15 min): %s at the start, %s at the end\n", info.loadStart, info.loadEnd)
	fmt.Fprintf(&b, "- settings: rounds %d; per round, scenario and target: %s warm-up + %s measured; call timeout %s; echo backends %d\n",
		info.rounds, info.settings.warmup, info.settings.duration, info.settings.callTimeout, info.backends)
	b.WriteString("\nEverything runs in this one process on 127.0.0.1: the load generator, both proxies " +
		"and the backends share the CPUs above. Absolute figures are therefore low; compare the ratios. " +
		"Targets are measured in turn within each round, starting with a different one each round. " +
		"Figures are medians over the rounds, \"vs\" columns the medians of each round's ratios, " +
		"\"range\" the lowest and highest round, errors the total over all rounds. " +
		"\"cores\" is the CPU time the whole process used per second of the measurement: " +
		"below GOMAXPROCS, the process was waiting (on too few callers, or on other work on the machine). " +
		"\"CPU/call\" and \"CPU/MiB\" are that CPU time per successful call or per MiB received: " +
		"they hold when other work takes CPUs away, and a proxy's excess over direct is what it costs.\n")
	for _, sc := range m.scenarios {
		fmt.Fprintf(&b, "\n## %s\n\n%s.\n\n", sc.name, capitalize(sc.describe()))
		if sc.kind == serverStreamCall {
			writeStreamTable(&b, sc, m)
		} else {
			writeUnaryTable(&b, sc, m)
		}
		writeErrorSamples(&b, sc, m)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeUnaryTable(b *strings.Builder, sc scenario, m *measurements) {
	b.WriteString("Latency is per call, from its start to its status.\n\n")
	b.WriteString("| target | calls/s | range | vs direct | vs grpc-proxy | p50 | p99 | errors | cores | CPU/call |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, t := range m.targets {
		s := m.summarize(sc, t)
		fmt.Fprintf(b, "| %s | %s | %s–%s | %s | %s | %s | %s | %d | %s | %s |\n",
			t, formatRate(s.throughput), formatRate(s.minThroughput), formatRate(s.maxThroughput),
			formatRatio(s.vsDirect), formatRatio(s.vsGRPCProxy),
			formatDuration(s.callP50), formatDuration(s.callP99), s.errors, formatRatio(s.cores),
			formatDuration(s.cpuPerWork))
	}
}

func writeStreamTable(b *strings.Builder, sc scenario, m *measurements) {
	b.WriteString("\"msg\" latency is per response: the gap since the previous response of the call " +
		"(since the call's start for the first); \"call\" latency is per call, from its start to its status.\n\n")
	b.WriteString("| target | MiB/s | range | msgs/s | vs direct | vs grpc-proxy | msg p50 | msg p99 | call p50 | call p99 | errors | cores | CPU/MiB |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, t := range m.targets {
		s := m.summarize(sc, t)
		fmt.Fprintf(b, "| %s | %s | %s–%s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n",
			t, formatRate(s.throughput), formatRate(s.minThroughput), formatRate(s.maxThroughput),
			formatRate(s.messagesPerSec), formatRatio(s.vsDirect), formatRatio(s.vsGRPCProxy),
			formatDuration(s.msgP50), formatDuration(s.msgP99),
			formatDuration(s.callP50), formatDuration(s.callP99), s.errors, formatRatio(s.cores),
			formatDuration(s.cpuPerWork))
	}
}

func writeErrorSamples(b *strings.Builder, sc scenario, m *measurements) {
	for _, t := range m.targets {
		s := m.summarize(sc, t)
		if s.errors == 0 {
			continue
		}
		fmt.Fprintf(b, "\nErrors of %s (first distinct messages):\n\n", t)
		for _, msg := range s.samples {
			fmt.Fprintf(b, "- `%s`\n", strings.ReplaceAll(msg, "`", "'"))
		}
	}
}

// formatRate prints a rate with at most one decimal, fewer as it grows.
func formatRate(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

func formatRatio(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// formatDuration prints d with three significant digits in µs, ms or s.
func formatDuration(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case d <= 0:
		return "–"
	case us < 1000:
		return sig3(us) + " µs"
	case us < 1e6:
		return sig3(us/1e3) + " ms"
	default:
		return sig3(us/1e6) + " s"
	}
}

// sig3 prints v (0 < v < 1000) with three significant digits.
func sig3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func formatBytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d-byte", n)
	}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
