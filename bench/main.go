// Command bench measures what quaestor's proxy costs. In one run it calls
// the same echo backends three ways: directly, through quaestor's proxy and
// through github.com/mwitkow/grpc-proxy's TransparentHandler (the baseline),
// round after round with the targets interleaved, and prints a markdown
// table of throughput, latency percentiles, errors and ratios.
//
//	go run ./bench                                # default: 3 rounds × (1 s + 5 s) per scenario and target
//	go run ./bench -out bench/results/latest.md   # also write the report to a file
//	go run ./bench -duration 2s -rounds 1 -scenarios unary-16
//
// Everything (load generator, proxies, backends) runs in this process on
// 127.0.0.1; see bench/README.md for how to read the figures.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
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
	backends  int
	scenarios []scenario
	targets   []string
	out       string
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
	fs.DurationVar(&cfg.settings.duration, "duration", 5*time.Second, "measured time per round, scenario and target")
	fs.DurationVar(&cfg.settings.warmup, "warmup", time.Second, "unrecorded load before each measurement, on the same connections")
	fs.DurationVar(&cfg.settings.callTimeout, "call-timeout", 30*time.Second, "bound on each call; a call that hits it is an error")
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds; each measures every scenario on every target, and the report takes the median")
	fs.IntVar(&cfg.backends, "backends", 1, "echo backends behind the targets (direct connections and both proxies spread over them)")
	fs.StringVar(&scenarios, "scenarios", scenarios, "comma-separated scenarios to run")
	fs.StringVar(&targets, "targets", targets, "comma-separated targets to measure (direct, quaestor, grpc-proxy)")
	fs.StringVar(&cfg.out, "out", "", "also write the report to this file (its directory is created)")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the measurements (all targets; narrow with -targets) to this file")
	if err := fs.Parse(args); err != nil {
		return config{}, err
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
	case cfg.backends < 1:
		return config{}, fmt.Errorf("-backends: %d, want at least 1", cfg.backends)
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
	info := runInfo{
		date:       time.Now(),
		goVersion:  fmt.Sprintf("go version %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH),
		gomaxprocs: runtime.GOMAXPROCS(0),
		numCPU:     runtime.NumCPU(),
		cpuModel:   cpuModel(),
		command:    commandLine(args),
		loadStart:  loadAverage(),
		rounds:     cfg.rounds,
		backends:   cfg.backends,
		settings:   cfg.settings,
	}
	tb, err := startTestbed(cfg.backends)
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(cfg.cpuProfile)
	if err != nil {
		return errors.Join(err, tb.Close())
	}
	m, measureErr := measureAll(ctx, tb, cfg, stderr)
	measureErr = errors.Join(measureErr, stopProfile())
	info.loadEnd = loadAverage()
	if err := tb.Close(); err != nil {
		return errors.Join(measureErr, fmt.Errorf("stopping testbed: %w", err))
	}
	if measureErr != nil {
		return measureErr
	}
	var report bytes.Buffer
	if err := writeReport(&report, info, m); err != nil {
		return err
	}
	if _, err := stdout.Write(report.Bytes()); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	if cfg.out != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
			return fmt.Errorf("-out: %w", err)
		}
		if err := os.WriteFile(cfg.out, report.Bytes(), 0o644); err != nil {
			return fmt.Errorf("-out: %w", err)
		}
	}
	return nil
}

// measureAll runs every round; within a round every scenario, and within a
// scenario every target, starting with a different target each round so
// that none is always measured first (on fresh caches) or last. Progress
// goes to progress.
func measureAll(ctx context.Context, tb *testbed, cfg config, progress io.Writer) (*measurements, error) {
	m := newMeasurements(cfg.scenarios, cfg.targets, cfg.rounds)
	for round := range cfg.rounds {
		for _, sc := range cfg.scenarios {
			for i := range cfg.targets {
				target := cfg.targets[(round+i)%len(cfg.targets)]
				// Start each measurement with the garbage of the previous
				// one collected.
				runtime.GC()
				res, err := measure(ctx, tb.addrs[target], sc, cfg.settings)
				if err != nil {
					return nil, fmt.Errorf("round %d, %s, %s: %w", round+1, sc.name, target, err)
				}
				m.set(sc, target, round, res)
				fmt.Fprintf(progress, "round %d/%d  %-12s %-11s %s\n", round+1, cfg.rounds, sc.name, target, progressLine(sc, res))
			}
		}
	}
	return m, nil
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
		return fmt.Sprintf("%s MiB/s  %s msgs/s  call %s  errors %d  cores %s  CPU/MiB %s",
			formatRate(res.mebibytesPerSecond()), formatRate(res.messagesPerSecond()), lat, res.errors,
			formatRatio(res.cores()), formatDuration(res.cpuPerMiB()))
	}
	return fmt.Sprintf("%s calls/s  %s  errors %d  cores %s  CPU/call %s", formatRate(res.callsPerSecond()), lat, res.errors,
		formatRatio(res.cores()), formatDuration(res.cpuPerCall()))
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
	cmd := filepath.Base(os.Args[0])
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
