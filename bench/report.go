package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// runInfo describes the run, for the report's header.
type runInfo struct {
	date       time.Time
	goVersion  string
	gomaxprocs int
	// quaestorProcs is quaestor's GOMAXPROCS: the environment's, or its
	// default (internal/procs).
	quaestorProcs int
	numCPU        int
	cpuModel      string
	command       string
	// versions are the proxies' and libraries' versions, in report order.
	versions [][2]string
	// loadStart and loadEnd are the load averages before and after the
	// measurements.
	loadStart  string
	loadEnd    string
	rounds     int
	threads    int
	settings   loadSettings
	open       openLoopSettings
	openRates  []float64
	openRounds int
	// idle is each proxy's CPU use with no calls, after its start.
	idle []idleCPU
}

// idleCPU is a proxy's CPU use while no calls ran.
type idleCPU struct {
	name  string
	cores float64
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
		for _, t := range m.targetsOf(sc) {
			m.results[measurementKey{sc.name, t}] = make([]*result, rounds)
		}
	}
	return m
}

// targetsOf returns the targets sc is measured on, in report order: all
// of them, or for a registry scenario quaestor (whatever -targets says)
// and those of HAProxy and nginx that are among them.
func (m *measurements) targetsOf(sc scenario) []string {
	if sc.instances == 0 {
		return m.targets
	}
	var out []string
	for _, t := range registryTargets {
		if t == targetQuaestor || slices.Contains(m.targets, t) {
			out = append(out, t)
		}
	}
	return out
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
	// cpuPerWork is the load generator's CPU time per call (unary) or
	// per MiB (streams), backendPerWork the backend's.
	cpuPerWork     time.Duration
	backendPerWork time.Duration
	// vsDirect and vsHAProxy are the medians of the per-round ratios of
	// throughput; NaN when the other target was not measured.
	vsDirect  float64
	vsHAProxy float64
	callP50   time.Duration
	callP99   time.Duration
	callP999  time.Duration
	msgP50    time.Duration
	msgP99    time.Duration
	msgP999   time.Duration
	// proxyCPU10k is the proxy's CPU seconds per 10,000 messages, its
	// median over the rounds; proxyCores its CPUs kept busy.
	proxyCPU10k float64
	proxyCores  float64
	// proxySystemShare is the median share of the proxy's CPU time spent
	// in the kernel.
	proxySystemShare float64
	// peakMem is the highest proxy VmHWM of any round, in bytes; 0 when
	// unknown.
	peakMem int64
	errors  int64 // over all rounds
	samples []string
}

func (m *measurements) summarize(sc scenario, target string) summary {
	rounds := m.results[measurementKey{sc.name, target}]
	var (
		tput, msgs, cores, vsDirect, vsBaseline []float64
		callP50, callP99, msgP50, msgP99        []float64
		callP999, msgP999, proxyCPU, proxyCores []float64
		cpuPerWork, backendPerWork, proxySystem []float64
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
		if w := res.cpuPerWork(sc.kind); w > 0 {
			cpuPerWork = append(cpuPerWork, float64(w))
		}
		if w := res.backendCPUPerWork(sc.kind); w > 0 {
			backendPerWork = append(backendPerWork, float64(w))
		}
		if r, ok := ratio(targetDirect, round, own); ok {
			vsDirect = append(vsDirect, r)
		}
		if r, ok := ratio(targetHAProxy, round, own); ok {
			vsBaseline = append(vsBaseline, r)
		}
		if c := res.proxyCPUPer10k(); !math.IsNaN(c) {
			proxyCPU = append(proxyCPU, c)
			proxyCores = append(proxyCores, res.proxyCores())
		}
		if sh := res.proxySystemShare(); !math.IsNaN(sh) {
			proxySystem = append(proxySystem, sh)
		}
		if res.proxyMemKnown {
			s.peakMem = max(s.peakMem, res.proxyPeakMem)
		}
		callP50 = append(callP50, float64(res.callLatency.quantile(0.50)))
		callP99 = append(callP99, float64(res.callLatency.quantile(0.99)))
		callP999 = append(callP999, float64(res.callLatency.quantile(0.999)))
		msgP50 = append(msgP50, float64(res.messageGap.quantile(0.50)))
		msgP99 = append(msgP99, float64(res.messageGap.quantile(0.99)))
		msgP999 = append(msgP999, float64(res.messageGap.quantile(0.999)))
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
	s.backendPerWork = durationOrZero(median(backendPerWork))
	s.proxySystemShare = median(proxySystem)
	s.vsDirect = median(vsDirect)
	s.vsHAProxy = median(vsBaseline)
	s.proxyCPU10k = median(proxyCPU)
	s.proxyCores = median(proxyCores)
	s.callP50 = durationOrZero(median(callP50))
	s.callP99 = durationOrZero(median(callP99))
	s.callP999 = durationOrZero(median(callP999))
	s.msgP50 = durationOrZero(median(msgP50))
	s.msgP99 = durationOrZero(median(msgP99))
	s.msgP999 = durationOrZero(median(msgP999))
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

// writeReport writes the run's header, one markdown table per scenario
// (the registry scenarios in one table), and the open-loop table.
func writeReport(w io.Writer, info runInfo, m *measurements, open *openLoopResults) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# quaestor benchmark\n\n")
	fmt.Fprintf(&b, "- date: %s\n", info.date.Format(time.RFC3339))
	fmt.Fprintf(&b, "- command: `%s`\n", info.command)
	fmt.Fprintf(&b, "- go: `%s`\n", info.goVersion)
	for _, v := range info.versions {
		fmt.Fprintf(&b, "- %s: `%s`\n", v[0], v[1])
	}
	fmt.Fprintf(&b, "- machine: %s; logical CPUs %d; GOMAXPROCS %d (load generator, backend, grpc-proxy), quaestor's %d; HAProxy nbthread and nginx worker_processes %d\n",
		info.cpuModel, info.numCPU, info.gomaxprocs, info.quaestorProcs, info.threads)
	fmt.Fprintf(&b, "- load average (1, 5, 15 min): %s at the start, %s at the end\n", info.loadStart, info.loadEnd)
	if len(info.idle) > 0 {
		var parts []string
		for _, i := range info.idle {
			parts = append(parts, fmt.Sprintf("%s %s", i.name, formatRatio(i.cores)))
		}
		fmt.Fprintf(&b, "- proxies' CPU with no calls (cores, over 2 s once all had started): %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, "- closed loop: rounds %d; per round, scenario and target %s warm-up + %s measured; call timeout %s\n",
		info.rounds, info.settings.warmup, info.settings.duration, info.settings.callTimeout)
	if len(info.openRates) > 0 {
		fmt.Fprintf(&b, "- open loop: rounds %d; offered rates %s calls/s; per rate and target %s warm-up + %s measured; %d senders over %d connections; a call fails %s after its intended send time\n",
			info.openRounds, formatRates(info.openRates), info.open.warmup, info.open.duration, info.open.maxInFlight, info.open.conns, info.open.callTimeout)
	}
	b.WriteString("\nEvery target is a process of its own (the backend too), all on 127.0.0.1 and sharing the CPUs above " +
		"with the load generator. Targets are measured in turn within each round, starting with a different one each round. " +
		"Figures are medians over the rounds; \"vs\" columns are the medians of each round's throughput ratios; " +
		"\"range\" is the lowest and highest round; errors are totalled over all rounds. " +
		"\"proxy CPU\" is the proxy processes' user + system CPU time (/proc/<pid>/stat, nginx's master and workers summed) " +
		"per 10,000 messages (calls; round trips; stream responses) over the measured window, \"proxy cores\" the same per second; " +
		"\"proxy peak RSS\" is the highest VmHWM of any round, reset after each warm-up (clear_refs), so it is the peak of that scenario's measured window; " +
		"\"proxy in kernel\" is the share of the proxy's CPU time that was system time: system calls, and, on loopback, " +
		"the receiving side's TCP work that each send runs; " +
		"\"client CPU\" and \"backend CPU\" are the load generator's and the backend process's CPU time per message.\n")
	var registry []scenario
	for _, sc := range m.scenarios {
		if sc.instances > 0 {
			registry = append(registry, sc)
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n%s.\n\n", sc.name, capitalize(sc.describe()))
		if sc.kind == serverStreamCall {
			writeStreamTable(&b, sc, m)
		} else {
			writeUnaryTable(&b, sc, m)
		}
		writeErrorSamples(&b, sc, m)
	}
	if len(registry) > 0 {
		writeRegistryTable(&b, registry, m)
	}
	if open != nil {
		writeOpenLoopTable(&b, open)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeUnaryTable(b *strings.Builder, sc scenario, m *measurements) {
	what := "calls/s"
	if sc.kind == bidiPingPong {
		what = "round trips/s"
		b.WriteString("Latency is per round trip, from sending a message to receiving its echo.\n\n")
	} else {
		b.WriteString("Latency is per call, from its start to its status.\n\n")
	}
	fmt.Fprintf(b, "| target | %s | range | vs direct | vs haproxy | p50 | p99 | p99.9 | errors | %s |\n", what, costColumns)
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, t := range m.targets {
		s := m.summarize(sc, t)
		fmt.Fprintf(b, "| %s | %s | %s–%s | %s | %s | %s | %s | %s | %d | %s |\n",
			t, formatRate(s.throughput), formatRate(s.minThroughput), formatRate(s.maxThroughput),
			formatRatio(s.vsDirect), formatRatio(s.vsHAProxy),
			formatDuration(s.callP50), formatDuration(s.callP99), formatDuration(s.callP999), s.errors, s.costs())
	}
}

func writeStreamTable(b *strings.Builder, sc scenario, m *measurements) {
	b.WriteString("\"msg\" latency is per response: the gap since the previous response of the call " +
		"(since the call's start for the first); \"call\" latency is per call, from its start to its status. " +
		"Proxy CPU is per 10,000 responses (10,000 MiB); client and backend CPU per MiB.\n\n")
	fmt.Fprintf(b, "| target | MiB/s | range | vs direct | vs haproxy | msg p50 | msg p99 | msg p99.9 | call p50 | errors | %s |\n", costColumns)
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, t := range m.targets {
		s := m.summarize(sc, t)
		fmt.Fprintf(b, "| %s | %s | %s–%s | %s | %s | %s | %s | %s | %s | %d | %s |\n",
			t, formatRate(s.throughput), formatRate(s.minThroughput), formatRate(s.maxThroughput),
			formatRatio(s.vsDirect), formatRatio(s.vsHAProxy),
			formatDuration(s.msgP50), formatDuration(s.msgP99), formatDuration(s.msgP999),
			formatDuration(s.callP50), s.errors, s.costs())
	}
}

// costColumns are the last columns of every closed-loop table, which
// summary.costs fills: what each process spent on the work.
const costColumns = "proxy CPU s/10k | proxy in kernel | proxy cores | proxy peak RSS | client CPU | backend CPU"

func (s summary) costs() string {
	return fmt.Sprintf("%s | %s | %s | %s | %s | %s", formatSeconds(s.proxyCPU10k), formatPercent(s.proxySystemShare),
		formatRatio(s.proxyCores), formatMemory(s.peakMem), formatDuration(s.cpuPerWork), formatDuration(s.backendPerWork))
}

// writeRegistryTable writes the instance-count scenarios as one table:
// each proxy's cost per call against the number of instances it spreads
// the calls over.
func writeRegistryTable(b *strings.Builder, scs []scenario, m *measurements) {
	b.WriteString("\n## by number of instances\n\n")
	fmt.Fprintf(b, "Unary calls with a %s payload echoed back, %d callers over %d connections, spread over N instances: "+
		"one backend process listening on N loopback addresses 127.1.x.y. quaestor discovers them in etcd "+
		"and health-checks and load-polls each as a separate instance (least-loaded); HAProxy and nginx list the same N "+
		"addresses as servers (round robin, no health checks). \"vs 1\" is the median of each round's ratio to the same "+
		"proxy's 1-instance figure, \"vs haproxy\" to HAProxy's with as many servers.\n\n",
		formatBytes(scs[0].payloadSize), scs[0].callers, scs[0].conns)
	fmt.Fprintf(b, "| instances | target | calls/s | range | vs 1 | vs haproxy | p50 | p99 | p99.9 | errors | %s |\n", costColumns)
	b.WriteString("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	base := scs[0]
	for _, sc := range scs {
		for _, t := range m.targetsOf(sc) {
			s := m.summarize(sc, t)
			var ratios []float64
			for round, res := range m.results[measurementKey{sc.name, t}] {
				ref := m.results[measurementKey{base.name, t}][round]
				if res != nil && ref != nil && ref.callsPerSecond() > 0 {
					ratios = append(ratios, res.callsPerSecond()/ref.callsPerSecond())
				}
			}
			fmt.Fprintf(b, "| %d | %s | %s | %s–%s | %s | %s | %s | %s | %s | %d | %s |\n",
				sc.instances, t, formatRate(s.throughput), formatRate(s.minThroughput), formatRate(s.maxThroughput),
				formatRatio(median(ratios)), formatRatio(s.vsHAProxy), formatDuration(s.callP50), formatDuration(s.callP99),
				formatDuration(s.callP999), s.errors, s.costs())
		}
	}
	for _, sc := range scs {
		writeErrorSamples(b, sc, m)
	}
}

// writeOpenLoopTable writes, per offered rate, each target's achieved
// rate, latency from intended send time and errors.
func writeOpenLoopTable(b *strings.Builder, o *openLoopResults) {
	b.WriteString("\n## open loop: latency against offered load\n\n")
	b.WriteString("Unary calls with a 100-byte payload offered at a fixed rate over 4 connections, whatever the target does: " +
		"latency runs from each call's intended send time (no coordinated omission), so a target past its capacity " +
		"shows a queue that grows for the whole measurement, and calls that wait longer than the open-loop call timeout " +
		"fail (\"errors\": DEADLINE_EXCEEDED, the target was past its capacity). \"achieved\" is successful calls per second " +
		"from the first intended send to the last answer; latencies are those of the successful calls.\n\n")
	b.WriteString("| offered calls/s | target | achieved | p50 | p99 | p99.9 | errors |\n")
	b.WriteString("|--:|---|--:|--:|--:|--:|--:|\n")
	for i, rate := range o.rates {
		for _, t := range o.targets {
			p := o.point(t, i)
			if !p.ok {
				continue
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %d |\n", formatRate(rate), t, formatRate(p.achieved),
				formatDuration(p.p50), formatDuration(p.p99), formatDuration(p.p999), p.errors)
		}
	}
	for _, t := range o.targets {
		var samples []string
		for i := range o.rates {
			for _, s := range o.point(t, i).samples {
				if len(samples) < maxErrorSamples && !slices.Contains(samples, s) {
					samples = append(samples, s)
				}
			}
		}
		if len(samples) > 0 {
			fmt.Fprintf(b, "\nOpen-loop errors of %s (first distinct messages):\n\n", t)
			for _, msg := range samples {
				fmt.Fprintf(b, "- `%s`\n", strings.ReplaceAll(msg, "`", "'"))
			}
		}
	}
}

func writeErrorSamples(b *strings.Builder, sc scenario, m *measurements) {
	for _, t := range m.targetsOf(sc) {
		s := m.summarize(sc, t)
		if s.errors == 0 {
			continue
		}
		fmt.Fprintf(b, "\nErrors of %s in %s (first distinct messages):\n\n", t, sc.name)
		for _, msg := range s.samples {
			fmt.Fprintf(b, "- `%s`\n", strings.ReplaceAll(msg, "`", "'"))
		}
	}
}

// formatSeconds prints CPU seconds with three significant digits.
func formatSeconds(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v <= 0:
		return "0"
	case v < 1000:
		return sig3Small(v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// sig3Small prints 0 < v < 1000 with three significant digits, also
// below 1.
func sig3Small(v float64) string {
	if v >= 1 {
		return sig3(v)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// formatMemory prints bytes in MiB, "–" for unknown (0).
func formatMemory(n int64) string {
	if n <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func formatRates(rates []float64) string {
	var out []string
	for _, r := range rates {
		out = append(out, formatRate(r))
	}
	return strings.Join(out, ", ")
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

// formatPercent prints a share (0 to 1) as a whole percentage.
func formatPercent(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*v)
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
