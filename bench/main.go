// Command bench measures what quaestor's proxy costs, side by side with
// the proxies it is compared with. In one run it calls the same echo
// backend directly, through `quaestor proxy`, through
// github.com/mwitkow/grpc-proxy's TransparentHandler, through HAProxy and
// through nginx, every one of them a process of its own, round after round
// with the targets interleaved; then calls spread over 1 to 1,000
// instances, which quaestor discovers in etcd and HAProxy and nginx list
// as servers; then an open loop at fixed offered rates.
// It prints a markdown report and can draw latency against offered load.
//
//	make bench                                    # installs haproxy and nginx, builds, runs everything
//	go run ./bench -duration 1s -rounds 1 -rates 1000,5000
//	go run ./bench -targets direct,quaestor -scenarios unary-16 -rates ""
//
// See bench/README.md for the method and how to read the figures.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quaestor-go/quaestor/internal/procs"
)

func main() {
	ctx, stop := signalContext()
	var err error
	if role := os.Getenv(roleEnv); role != "" {
		err = runRole(ctx, role, os.Args[1:], os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	settings  loadSettings
	rounds    int
	scenarios []scenario
	targets   []string
	out       string
	// plot, when set, is where the PNG of latency against offered load
	// goes.
	plot string
	// rates are the open loop's offered rates (none: no open loop).
	rates      []float64
	open       openLoopSettings
	openRounds int
	// quaestorBin, haproxyBin and nginxBin are the proxies' binaries;
	// quaestor is built when none is given.
	quaestorBin, haproxyBin, nginxBin string
	threads                           int
	keep                              bool
	quaestorAdmin                     bool
	// settle is how long a paused registry quaestor runs, resumed and
	// serving all its instances, before its measurement.
	settle time.Duration
	// cpuProfile, when set, is where the CPU profile of the measurements
	// goes.
	cpuProfile string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg       config
		scenarios = names(defaultScenarios())
		targets   = strings.Join(allTargets, ",")
	)
	fs.DurationVar(&cfg.settings.duration, "duration", 3*time.Second, "measured time per round, scenario and target")
	fs.DurationVar(&cfg.settings.warmup, "warmup", time.Second, "unrecorded load before each measurement, on the same connections")
	fs.DurationVar(&cfg.settings.callTimeout, "call-timeout", 30*time.Second, "bound on each call; a call that hits it is an error")
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds; each measures every scenario on every target, and the report takes the median")
	fs.StringVar(&scenarios, "scenarios", scenarios, "comma-separated scenarios to run")
	fs.StringVar(&targets, "targets", targets, "comma-separated targets to measure ("+strings.Join(allTargets, ", ")+")")
	fs.StringVar(&cfg.out, "out", "", "also write the report to this file (its directory is created)")
	fs.StringVar(&cfg.plot, "plot", "", "write a PNG of open-loop latency (p50, p99) against offered load to this file")
	rates := fs.String("rates", "1000,2500,5000,7500,10000,15000", "open loop: comma-separated offered rates in calls/s (empty: no open loop)")
	fs.DurationVar(&cfg.open.duration, "open-duration", 2*time.Second, "open loop: measured time per rate and target")
	fs.DurationVar(&cfg.open.warmup, "open-warmup", 500*time.Millisecond, "open loop: unrecorded load at the same rate before each measurement")
	fs.DurationVar(&cfg.open.callTimeout, "open-timeout", 2*time.Second, "open loop: a call not answered this long after its intended send time fails (past its capacity a target piles up such calls; this bounds the run)")
	fs.IntVar(&cfg.openRounds, "open-rounds", 1, "open loop: rounds (the report takes the median)")
	fs.IntVar(&cfg.open.maxInFlight, "open-senders", 1000, "open loop: calls in flight at most; a due call waits for a sender, and the wait counts in its latency")
	fs.StringVar(&cfg.quaestorBin, "quaestor", "", "the quaestor binary (default: built from ./cmd/quaestor into a temporary directory)")
	fs.StringVar(&cfg.haproxyBin, "haproxy", lookBinary("haproxy"), "the haproxy binary")
	fs.StringVar(&cfg.nginxBin, "nginx", lookBinary("nginx"), "the nginx binary")
	fs.IntVar(&cfg.threads, "threads", runtime.NumCPU(), "HAProxy's nbthread and nginx's worker_processes")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the generated configurations and the processes' logs (their directory is printed)")
	fs.DurationVar(&cfg.settle, "settle", 2*time.Second, "registry scenarios: how long the quaestor, paused while other targets are measured, runs idle after resuming before its warm-up")
	fs.BoolVar(&cfg.quaestorAdmin, "quaestor-pprof", false, "serve each quaestor's admin server with the Go profiler (admin.pprof) on a free port, printed at the start")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator to this file")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	cfg.open.conns = 4
	cfg.open.payloadSize = 100
	for _, r := range splitList(*rates) {
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			return config{}, fmt.Errorf("-rates: %q is not a rate above 0", r)
		}
		cfg.rates = append(cfg.rates, v)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case cfg.settings.duration <= 0:
		return config{}, fmt.Errorf("-duration: %s, want more than 0", cfg.settings.duration)
	case cfg.settings.warmup < 0:
		return config{}, fmt.Errorf("-warmup: %s, want 0 or more", cfg.settings.warmup)
	case cfg.settings.callTimeout <= 0:
		return config{}, fmt.Errorf("-call-timeout: %s, want more than 0", cfg.settings.callTimeout)
	case cfg.rounds < 1:
		return config{}, fmt.Errorf("-rounds: %d, want at least 1", cfg.rounds)
	case cfg.open.duration <= 0:
		return config{}, fmt.Errorf("-open-duration: %s, want more than 0", cfg.open.duration)
	case cfg.open.warmup < 0:
		return config{}, fmt.Errorf("-open-warmup: %s, want 0 or more", cfg.open.warmup)
	case cfg.open.callTimeout <= 0:
		return config{}, fmt.Errorf("-open-timeout: %s, want more than 0", cfg.open.callTimeout)
	case cfg.openRounds < 1:
		return config{}, fmt.Errorf("-open-rounds: %d, want at least 1", cfg.openRounds)
	case cfg.open.maxInFlight < 1:
		return config{}, fmt.Errorf("-open-senders: %d, want at least 1", cfg.open.maxInFlight)
	case cfg.settle < 0:
		return config{}, fmt.Errorf("-settle: %s, want 0 or more", cfg.settle)
	case cfg.threads < 1:
		return config{}, fmt.Errorf("-threads: %d, want at least 1", cfg.threads)
	}
	for _, name := range splitList(scenarios) {
		i := slices.IndexFunc(defaultScenarios(), func(sc scenario) bool { return sc.name == name })
		if i < 0 {
			return config{}, fmt.Errorf("-scenarios: unknown scenario %q, want some of %s", name, names(defaultScenarios()))
		}
		if !slices.ContainsFunc(cfg.scenarios, func(sc scenario) bool { return sc.name == name }) {
			cfg.scenarios = append(cfg.scenarios, defaultScenarios()[i])
		}
	}
	for _, name := range splitList(targets) {
		if !slices.Contains(allTargets, name) {
			return config{}, fmt.Errorf("-targets: unknown target %q, want some of %s", name, strings.Join(allTargets, ","))
		}
		cfg.targets = append(cfg.targets, name)
	}
	if len(cfg.scenarios) == 0 || len(cfg.targets) == 0 {
		return config{}, errors.New("-scenarios and -targets: want at least one of each")
	}
	// Report in the canonical order whatever order the flag gave.
	slices.SortStableFunc(cfg.targets, func(a, b string) int {
		return slices.Index(allTargets, a) - slices.Index(allTargets, b)
	})
	cfg.targets = slices.Compact(cfg.targets)
	return cfg, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.quaestorBin == "" && (slices.Contains(cfg.targets, targetQuaestor) || slices.ContainsFunc(cfg.scenarios, isRegistry)) {
		dir, err := os.MkdirTemp("", "quaestor-bench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(stderr, "building ./cmd/quaestor")
		if cfg.quaestorBin, err = buildQuaestor(ctx, dir); err != nil {
			return err
		}
	}
	info := runInfo{
		date:          time.Now(),
		goVersion:     fmt.Sprintf("go version %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH),
		gomaxprocs:    runtime.GOMAXPROCS(0),
		quaestorProcs: procs.Default(), // quaestor runs in this environment
		numCPU:        runtime.NumCPU(),
		cpuModel:      cpuModel(),
		command:       commandLine(args),
		loadStart:     loadAverage(),
		rounds:        cfg.rounds,
		threads:       cfg.threads,
		settings:      cfg.settings,
		open:          cfg.open,
		openRates:     cfg.rates,
		openRounds:    cfg.openRounds,
		versions:      versions(cfg),
	}
	opts := testbedOptions{
		targets:       cfg.targets,
		quaestorBin:   cfg.quaestorBin,
		haproxyBin:    cfg.haproxyBin,
		nginxBin:      cfg.nginxBin,
		threads:       cfg.threads,
		keepDir:       cfg.keep,
		idleWindow:    2 * time.Second,
		quaestorAdmin: cfg.quaestorAdmin,
		progress:      stderr,
	}
	for _, sc := range cfg.scenarios {
		if sc.instances > 0 {
			opts.instanceCounts = append(opts.instanceCounts, sc.instances)
		}
	}
	fmt.Fprintln(stderr, "starting the backend and the proxies")
	tb, err := startTestbed(ctx, opts)
	if err != nil {
		return err
	}
	if cfg.keep {
		fmt.Fprintln(stderr, "configurations and logs in", tb.dir)
	}
	for _, t := range tb.proxies() {
		info.idle = append(info.idle, idleCPU{name: t.proc.name, cores: t.idleCores})
	}
	stopProfile, err := startCPUProfile(cfg.cpuProfile)
	if err != nil {
		return errors.Join(err, tb.Close())
	}
	m, measureErr := measureAll(ctx, tb, cfg, stderr)
	var open *openLoopResults
	if measureErr == nil && len(cfg.rates) > 0 {
		open, measureErr = measureOpenLoops(ctx, tb, cfg, stderr)
	}
	measureErr = errors.Join(measureErr, stopProfile())
	info.loadEnd = loadAverage()
	if err := tb.Close(); err != nil {
		return errors.Join(measureErr, fmt.Errorf("stopping testbed: %w", err))
	}
	if measureErr != nil {
		return measureErr
	}
	var report bytes.Buffer
	if err := writeReport(&report, info, m, open); err != nil {
		return err
	}
	if _, err := stdout.Write(report.Bytes()); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	if cfg.out != "" {
		if err := writeFile(cfg.out, report.Bytes()); err != nil {
			return fmt.Errorf("-out: %w", err)
		}
	}
	if cfg.plot != "" && open != nil {
		png, err := plotLatency(open)
		if err != nil {
			return fmt.Errorf("-plot: %w", err)
		}
		if err := writeFile(cfg.plot, png); err != nil {
			return fmt.Errorf("-plot: %w", err)
		}
	}
	return nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func isRegistry(sc scenario) bool { return sc.instances > 0 }

// buildQuaestor builds ./cmd/quaestor into dir, with the extra go build
// flags given, and returns the binary.
func buildQuaestor(ctx context.Context, dir string, flags ...string) (string, error) {
	bin := filepath.Join(dir, "quaestor")
	args := append(append([]string{"build"}, flags...), "-o", bin, "github.com/quaestor-go/quaestor/cmd/quaestor")
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building quaestor: %w: %s", err, out)
	}
	return bin, nil
}

// versions lists what the report names: the proxies' versions and the
// gRPC libraries.
func versions(cfg config) [][2]string {
	v := [][2]string{{"grpc-go", moduleVersion("google.golang.org/grpc")}}
	if cfg.quaestorBin != "" {
		v = append(v, [2]string{"quaestor", binaryVersion(cfg.quaestorBin, "version")})
	}
	if slices.Contains(cfg.targets, targetGRPCProxy) {
		v = append(v, [2]string{"grpc-proxy", moduleVersion("github.com/mwitkow/grpc-proxy")})
	}
	if slices.Contains(cfg.targets, targetHAProxy) {
		v = append(v, [2]string{"haproxy", binaryVersion(cfg.haproxyBin, "-v")})
	}
	if slices.Contains(cfg.targets, targetNginx) {
		v = append(v, [2]string{"nginx", binaryVersion(cfg.nginxBin, "-v")})
	}
	return v
}

// measureAll runs every round; within a round every scenario, and within a
// scenario every target, starting with a different target each round so
// that none is always measured first (on fresh caches) or last. The
// registry scenarios are measured on the proxies of their instance count
// (quaestor, and HAProxy and nginx when among the targets). Progress goes
// to progress.
func measureAll(ctx context.Context, tb *testbed, cfg config, progress io.Writer) (*measurements, error) {
	m := newMeasurements(cfg.scenarios, cfg.targets, cfg.rounds)
	for round := range cfg.rounds {
		for _, sc := range cfg.scenarios {
			targets := m.targetsOf(sc)
			for i := range targets {
				name := targets[(round+i)%len(targets)]
				t := tb.targets[name]
				if sc.instances > 0 {
					t = tb.byInstances[sc.instances][name]
					if err := t.resume(ctx, sc.instances, cfg.settle); err != nil {
						return nil, fmt.Errorf("round %d, %s: %w", round+1, sc.name, err)
					}
				}
				// Start each measurement with the garbage of the previous
				// one collected.
				runtime.GC()
				res, err := measure(ctx, t, sc, cfg.settings)
				t.pause()
				if err != nil {
					return nil, fmt.Errorf("round %d, %s, %s: %w", round+1, sc.name, name, err)
				}
				m.set(sc, name, round, res)
				fmt.Fprintf(progress, "round %d/%d  %-14s %-11s %s\n", round+1, cfg.rounds, sc.name, name, progressLine(sc, res))
			}
		}
	}
	return m, nil
}

// measureOpenLoops runs the open loop at every offered rate on every
// target, the targets interleaved as in measureAll.
func measureOpenLoops(ctx context.Context, tb *testbed, cfg config, progress io.Writer) (*openLoopResults, error) {
	o := newOpenLoopResults(cfg.rates, cfg.targets, cfg.openRounds)
	for round := range cfg.openRounds {
		for ri, rate := range cfg.rates {
			for i := range cfg.targets {
				name := cfg.targets[(round+ri+i)%len(cfg.targets)]
				runtime.GC()
				res, err := measureOpenLoop(ctx, tb.targets[name], rate, cfg.open)
				if err != nil {
					return nil, fmt.Errorf("open loop round %d, %s calls/s, %s: %w", round+1, formatRate(rate), name, err)
				}
				o.results[name][ri][round] = res
				fmt.Fprintf(progress, "open %d/%d  %6s calls/s  %-11s achieved %s  p50 %s  p99 %s  p99.9 %s  errors %d\n",
					round+1, cfg.openRounds, formatRate(rate), name, formatRate(res.callsPerSecond()),
					formatDuration(res.callLatency.quantile(0.5)), formatDuration(res.callLatency.quantile(0.99)),
					formatDuration(res.callLatency.quantile(0.999)), res.errors)
			}
		}
	}
	return o, nil
}

// startCPUProfile starts profiling to path, when it is set, and returns
// the function that stops and writes the profile.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, errors.Join(fmt.Errorf("-cpuprofile: %w", err), f.Close())
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		return nil
	}, nil
}

func progressLine(sc scenario, res *result) string {
	lat := fmt.Sprintf("p50 %s  p99 %s", formatDuration(res.callLatency.quantile(0.5)), formatDuration(res.callLatency.quantile(0.99)))
	if sc.kind == serverStreamCall {
		return fmt.Sprintf("%s MiB/s  %s msgs/s  call %s  errors %d  proxy CPU s/10k %s  peak RSS %s",
			formatRate(res.mebibytesPerSecond()), formatRate(res.messagesPerSecond()), lat, res.errors,
			formatSeconds(res.proxyCPUPer10k()), formatMemory(res.proxyPeakMem))
	}
	return fmt.Sprintf("%s calls/s  %s  errors %d  proxy CPU s/10k %s  peak RSS %s", formatRate(res.callsPerSecond()), lat, res.errors,
		formatSeconds(res.proxyCPUPer10k()), formatMemory(res.proxyPeakMem))
}

func names(scenarios []scenario) string {
	var out []string
	for _, sc := range scenarios {
		out = append(out, sc.name)
	}
	return strings.Join(out, ",")
}

func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// commandLine reconstructs the command that started the run: `go run
// ./bench ...` when run by go run (whose binary lives in a go-build
// directory), else the binary's own command line.
func commandLine(args []string) string {
	cmd := os.Args[0]
	if strings.Contains(os.Args[0], "go-build") {
		cmd = "go run ./bench"
	}
	parts := []string{cmd}
	for _, a := range args {
		if strings.ContainsAny(a, " \t'\"$`\\") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
