//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// sample is one look at the proxy and the load. The counters are
// cumulative; the report derives rates between samples.
type sample struct {
	elapsed  time.Duration // since the load started
	rssBytes float64       // VmRSS of the quaestor process
	// heapInuse (go_memstats_heap_inuse_bytes) and goroutines
	// (go_goroutines) are the lowest of sampleReads reads; the Max fields
	// the highest.
	heapInuse, heapInuseMax   float64
	goroutines, goroutinesMax float64
	live                      int // backend processes running

	clientCalls    int64 // unary calls ended, any status
	clientFailures int64 // unary calls ended with a status other than OK
	skipped        int64 // offered calls no caller was free to make
	streamMessages int64
	proxyRequests  float64 // sum of quaestor_proxy_requests_total
	proxyErrors    float64 // the same, code other than OK
	// endpoints and healthy are the Echo endpoints in the proxy's table
	// and those of them health-checked SERVING; inFlight the calls the
	// proxy forwards now (quaestor_proxy_in_flight).
	endpoints, healthy, inFlight float64
}

// proxyMetrics are the series the sampler reads from the admin /metrics.
type proxyMetrics struct {
	goroutines, heapInuse  float64
	requests, errors       float64
	hasGoroutines, hasHeap bool
	requestsByCode         map[string]float64
	// endpoints and healthy count the Echo endpoints (series of
	// quaestor_endpoint_healthy); inFlight sums quaestor_proxy_in_flight.
	endpoints, healthy, inFlight float64
}

// parseMetrics reads the Prometheus text exposition.
func parseMetrics(text string) proxyMetrics {
	m := proxyMetrics{requestsByCode: make(map[string]float64)}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		series, valueText := line[:i], line[i+1:]
		value, err := strconv.ParseFloat(valueText, 64)
		if err != nil {
			continue
		}
		name, labels, _ := strings.Cut(series, "{")
		switch name {
		case "go_goroutines":
			m.goroutines, m.hasGoroutines = value, true
		case "go_memstats_heap_inuse_bytes":
			m.heapInuse, m.hasHeap = value, true
		case "quaestor_endpoint_healthy":
			if labelValue(labels, "service") == echoService {
				m.endpoints++
				m.healthy += value
			}
		case "quaestor_proxy_in_flight":
			m.inFlight += value
		case "quaestor_proxy_requests_total":
			code := labelValue(labels, "code")
			m.requestsByCode[code] += value
			m.requests += value
			if code != codes.OK.String() {
				m.errors += value
			}
		}
	}
	return m
}

// labelValue returns the value of label name in `a="x",b="y"}`.
func labelValue(labels, name string) string {
	_, rest, ok := strings.Cut(labels, name+`="`)
	if !ok {
		return ""
	}
	value, _, _ := strings.Cut(rest, `"`)
	return value
}

// readRSS returns the resident set size of process pid, from
// /proc/<pid>/status.
func readRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// sampleReads is how many times a sample reads /metrics: goroutines and
// heap are the lowest of the reads, so that a burst of calls in flight or a
// garbage-collection cycle half done does not look like growth, while a
// leak, which raises the floor, still shows.
const sampleReads = 5

// takeSample reads the proxy's RSS and metrics and the load's counters.
func takeSample(ctx context.Context, q *quaestorProc, elapsed, readGap time.Duration, stats *loadStats, p *pool) (sample, proxyMetrics, error) {
	var m proxyMetrics
	minGoroutines, minHeap := math.Inf(1), math.Inf(1)
	var maxGoroutines, maxHeap float64
	for i := range sampleReads {
		if i > 0 {
			select {
			case <-ctx.Done():
				return sample{}, proxyMetrics{}, ctx.Err()
			case <-time.After(readGap):
			}
		}
		code, body, err := httpGet(ctx, "http://"+q.adminAddr+"/metrics")
		if err != nil {
			return sample{}, proxyMetrics{}, fmt.Errorf("GET /metrics: %w", err)
		}
		if code != 200 {
			return sample{}, proxyMetrics{}, fmt.Errorf("GET /metrics: status %d", code)
		}
		m = parseMetrics(body)
		minGoroutines, maxGoroutines = min(minGoroutines, m.goroutines), max(maxGoroutines, m.goroutines)
		minHeap, maxHeap = min(minHeap, m.heapInuse), max(maxHeap, m.heapInuse)
	}
	rss, err := readRSS(q.cmd.Process.Pid)
	if err != nil {
		return sample{}, proxyMetrics{}, err
	}
	counts, _ := stats.unary.snapshot()
	var calls, failures int64
	for c, n := range counts {
		calls += n
		if c != codes.OK {
			failures += n
		}
	}
	live, _, _ := p.snapshot()
	return sample{
		elapsed:        elapsed,
		rssBytes:       rss,
		heapInuse:      minHeap,
		heapInuseMax:   maxHeap,
		goroutines:     minGoroutines,
		goroutinesMax:  maxGoroutines,
		live:           live,
		clientCalls:    calls,
		clientFailures: failures,
		skipped:        stats.skipped.Load(),
		streamMessages: stats.streamMessages.Load(),
		proxyRequests:  m.requests,
		proxyErrors:    m.errors,
		endpoints:      m.endpoints,
		healthy:        m.healthy,
		inFlight:       m.inFlight,
	}, m, nil
}
