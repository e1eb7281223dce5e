//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// config is the command line.
type config struct {
	duration, warmup, sampleEvery, churnEvery time.Duration
	out                                       string
	quaestorBin                               string
	rate, callers, conns, streams             int
	minServing, maxBackends                   int
	leaseTTL                                  time.Duration
	seed                                      uint64
	// check turns the flatness verdict into the exit status; the short
	// self-test only checks that the soak runs and reports.
	check bool
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&cfg.duration, "duration", 10*time.Minute, "how long the load runs")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Minute, "samples before this are shown but not checked for flatness")
	fs.DurationVar(&cfg.sampleEvery, "sample", 10*time.Second, "interval between samples of the proxy")
	fs.DurationVar(&cfg.churnEvery, "churn", 3*time.Second, "interval between churn actions on the backends")
	fs.StringVar(&cfg.out, "out", "bench/results/soak", "directory for samples.csv, soak.png, summary.md, profiles and logs")
	fs.StringVar(&cfg.quaestorBin, "quaestor", "", "quaestor binary to soak (default: go build ./cmd/quaestor into the user's cache directory)")
	fs.IntVar(&cfg.rate, "rate", 1000, "offered unary calls per second (100-byte payload, open loop)")
	fs.IntVar(&cfg.callers, "callers", 128, "goroutines making the unary calls; an offered call none is free for is counted as skipped")
	fs.IntVar(&cfg.conns, "conns", 4, "client connections to the proxy")
	fs.IntVar(&cfg.streams, "streams", 4, "long server streams kept open")
	fs.IntVar(&cfg.minServing, "min-serving", 3, "fewest backends the churn leaves registered and serving")
	fs.IntVar(&cfg.maxBackends, "max-backends", 10, "most backend processes running at once")
	fs.DurationVar(&cfg.leaseTTL, "lease-ttl", 3*time.Second, "lease TTL of each backend's registration (how long a killed one stays registered)")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the churn's choice of victims")
	fs.BoolVar(&cfg.check, "check", true, "exit 1 when goroutines, heap or RSS are not flat after warm-up")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	switch {
	case fs.NArg() > 0:
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.duration <= 0 || cfg.sampleEvery <= 0 || cfg.churnEvery <= 0:
		return config{}, errors.New("-duration, -sample and -churn must be positive")
	case cfg.warmup < 0 || cfg.warmup >= cfg.duration:
		return config{}, fmt.Errorf("-warmup %s must be at least 0 and below -duration %s", cfg.warmup, cfg.duration)
	case cfg.rate <= 0 || cfg.callers <= 0 || cfg.conns <= 0 || cfg.streams < 0:
		return config{}, errors.New("-rate, -callers and -conns must be positive, -streams not negative")
	case cfg.minServing < 2:
		return config{}, fmt.Errorf("-min-serving %d: at least 2", cfg.minServing)
	case cfg.maxBackends < cfg.minServing+2:
		return config{}, fmt.Errorf("-max-backends %d: at least -min-serving+2 (%d), or nothing can churn", cfg.maxBackends, cfg.minServing+2)
	case cfg.leaseTTL < 2*time.Second:
		return config{}, fmt.Errorf("-lease-ttl %s: etcd's minimum is 2s", cfg.leaseTTL)
	}
	return cfg, nil
}

// result is everything the report shows.
type result struct {
	cfg     config
	started time.Time
	// loadElapsed is how long the load ran.
	loadElapsed time.Duration
	samples     []sample
	metrics     proxyMetrics // the last sample's
	unary       map[string]int64
	unaryEx     map[string][]string
	streams     map[string]int64
	streamsEx   map[string][]string
	skipped     int64
	streamMsg   int64
	actions     map[string]int
	churnErrs   []string
	// causes counts the failed calls by the churn action just before
	// them, and kind.
	causes map[string]map[string]int
	// grown are the goroutine stacks with more goroutines at the end than
	// after warm-up; profiled tells whether both profiles were taken.
	grown    []stackCount
	profiled bool
	trends   []trend
	// proxyDied is set when quaestor exited before the soak stopped it;
	// stopErr is what its stop returned.
	proxyDied error
	stopErr   error
	machine   string
}

// soak runs the whole thing; see the package comment.
func soak(ctx context.Context, cfg config, stdout, stderr io.Writer) (err error) {
	logDir := filepath.Join(cfg.out, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "quaestor-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	bin := cfg.quaestorBin
	if bin == "" {
		fmt.Fprintln(stderr, "soak: building ./cmd/quaestor")
		if bin, err = buildQuaestor(ctx); err != nil {
			return err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	q, err := startQuaestor(ctx, bin, work, filepath.Join(logDir, "quaestor.log"))
	if err != nil {
		return err
	}
	res := &result{cfg: cfg, machine: machine()}
	events := &eventLog{}
	quaestorStopped := false
	defer func() {
		if !quaestorStopped {
			q.kill()
		}
	}()

	p, err := newPool(churnOptions{
		exe: exe, etcdURL: q.etcdURL, leaseTTL: cfg.leaseTTL, logDir: logDir, every: cfg.churnEvery,
		minServing: cfg.minServing, maxLive: cfg.maxBackends,
		flapFor: 3 * cfg.churnEvery, retireAfter: 2 * cfg.churnEvery,
		rand: rand.New(rand.NewPCG(cfg.seed, cfg.seed)), events: events,
	})
	if err != nil {
		return err
	}
	poolClosed := false
	defer func() {
		if !poolClosed {
			_ = p.close()
		}
	}()
	for range cfg.minServing + 2 {
		if err := p.add(); err != nil {
			return err
		}
	}
	if err := waitRouted(ctx, q.proxyAddr); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "soak: quaestor (pid %d) proxy %s admin %s; %d backends; %d calls/s for %s\n",
		q.cmd.Process.Pid, q.proxyAddr, q.adminAddr, cfg.minServing+2, cfg.rate, cfg.duration)

	// Cancelled, not timed out, at the end: a deadline here would become
	// every call's deadline, and the calls in flight at the end would
	// fail with DeadlineExceeded before the run's end is seen.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopTimer := time.AfterFunc(cfg.duration, cancel)
	defer stopTimer.Stop()
	stats := &loadStats{unary: newOutcomes("unary", events), streams: newOutcomes("stream", events)}
	res.started = time.Now()
	events.add("load", "started", "")
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = runLoad(runCtx, loadOptions{
			addr: q.proxyAddr, rate: cfg.rate, callers: cfg.callers, conns: cfg.conns, payloadSize: 100,
			callTimeout: 2 * time.Second, streams: cfg.streams, streamMessages: 300, streamGap: 100 * time.Millisecond,
		}, stats)
	})
	wg.Go(func() { p.run(runCtx) })
	sampleErr := sampleUntil(runCtx, cancel, cfg, q, stats, p, res, stderr)
	cancel()
	wg.Wait()
	res.loadElapsed = time.Since(res.started)
	interrupted := ctx.Err() != nil

	// The end state, before anything stops.
	saveProfiles(context.Background(), q, cfg.out, "end", stderr)
	warmProfile, errWarm := os.ReadFile(filepath.Join(cfg.out, "goroutines-warm.txt"))
	endProfile, errEnd := os.ReadFile(filepath.Join(cfg.out, "goroutines-end.txt"))
	if errWarm == nil && errEnd == nil {
		res.grown = grownStacks(parseGoroutines(string(warmProfile)), parseGoroutines(string(endProfile)), 8)
		res.profiled = true
	}
	res.unary, res.unaryEx = codeNames(stats.unary.snapshot())
	res.streams, res.streamsEx = codeNames(stats.streams.snapshot())
	res.skipped = stats.skipped.Load()
	res.streamMsg = stats.streamMessages.Load()

	poolClosed = true
	if err := p.close(); err != nil {
		fmt.Fprintf(stderr, "soak: stopping the backends: %v\n", err)
	}
	_, res.actions, res.churnErrs = p.snapshot()
	if res.proxyDied == nil {
		quaestorStopped = true
		res.stopErr = q.stop(45 * time.Second)
	}
	res.trends = trends(cfg, res.samples)
	res.causes = events.attribute(2*time.Second + cfg.churnEvery/2)
	if err := events.write(filepath.Join(cfg.out, "events.csv"), res.started); err != nil {
		return err
	}

	if err := writeReport(res, stdout); err != nil {
		return err
	}
	var errs []error
	if res.proxyDied != nil {
		errs = append(errs, fmt.Errorf("the proxy died during the soak: %w (see %s)", res.proxyDied, filepath.Join(logDir, "quaestor.log")))
	}
	if res.stopErr != nil {
		errs = append(errs, fmt.Errorf("stopping quaestor: %w", res.stopErr))
	}
	if sampleErr != nil {
		errs = append(errs, sampleErr)
	}
	if interrupted {
		errs = append(errs, fmt.Errorf("interrupted after %s", time.Since(res.started).Round(time.Second)))
	}
	if cfg.check && !interrupted && res.proxyDied == nil {
		for _, t := range res.trends {
			switch {
			case !t.checked:
				errs = append(errs, fmt.Errorf("flatness not checked: %s", t.reason))
			case !t.flat:
				errs = append(errs, fmt.Errorf("not flat: %s", t.reason))
			}
			if !t.checked {
				break // the same reason for every series
			}
		}
	}
	return errors.Join(errs...)
}

// sampleUntil samples every cfg.sampleEvery until ctx ends. If quaestor
// exits meanwhile it records that and cancels the run.
func sampleUntil(ctx context.Context, cancel context.CancelFunc, cfg config, q *quaestorProc, stats *loadStats, p *pool, res *result, stderr io.Writer) error {
	t := time.NewTicker(cfg.sampleEvery)
	defer t.Stop()
	profiledWarm := false
	for {
		s, m, err := takeSample(ctx, q, time.Since(res.started), min(cfg.sampleEvery/10, 200*time.Millisecond), stats, p)
		switch {
		case err == nil:
			res.samples = append(res.samples, s)
			res.metrics = m
			fmt.Fprintf(stderr, "soak: %6s rss %6.1f MiB heap %6.1f MiB goroutines %4.0f in flight %3.0f backends %2d endpoints %2.0f healthy %2.0f calls %d failed %d\n",
				s.elapsed.Round(time.Second), s.rssBytes/(1<<20), s.heapInuse/(1<<20), s.goroutines, s.inFlight, s.live, s.endpoints, s.healthy, s.clientCalls, s.clientFailures)
			if !m.hasGoroutines || !m.hasHeap {
				return errors.New("the admin /metrics has no go_goroutines or go_memstats_heap_inuse_bytes: is the Go collector registered?")
			}
			if !profiledWarm && s.elapsed >= cfg.warmup {
				profiledWarm = true
				saveProfiles(ctx, q, cfg.out, "warm", stderr)
			}
		case ctx.Err() == nil:
			select {
			case <-q.exited:
			default:
				return fmt.Errorf("sampling the proxy: %w", err)
			}
		}
		select {
		case <-q.exited:
			res.proxyDied = q.exitError()
			if res.proxyDied == nil {
				res.proxyDied = errors.New("exited with status 0")
			}
			cancel()
			return nil
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// waitRouted waits until a unary call through the proxy succeeds.
func waitRouted(ctx context.Context, addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	client := examplev1.NewEchoClient(cc)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		callCtx, callCancel := context.WithTimeout(ctx, time.Second)
		_, err := client.Unary(callCtx, &examplev1.EchoRequest{})
		callCancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no call through the proxy succeeded within 30s: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// saveProfiles writes the proxy's goroutine profile (text) and heap profile
// to dir, named by when; failures are only reported.
func saveProfiles(ctx context.Context, q *quaestorProc, dir, when string, stderr io.Writer) {
	for _, prof := range []struct{ path, file string }{
		{"/debug/pprof/goroutine?debug=1", "goroutines-" + when + ".txt"},
		{"/debug/pprof/heap", "heap-" + when + ".pb.gz"},
	} {
		code, body, err := httpGet(ctx, "http://"+q.adminAddr+prof.path)
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, prof.file), []byte(body), 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "soak: saving %s: %v\n", prof.file, err)
		}
	}
}
