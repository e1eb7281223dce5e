//go:build linux

package main

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoakShort runs the whole soak for a few seconds: the real quaestor
// binary, backend processes, churn, load, samples and the report, then
// checks the report's files and that no process is left. It measures
// nothing: the flatness verdict of so short a run is not asserted.
func TestSoakShort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out := t.TempDir()
	var stdout, stderr strings.Builder
	err := run(ctx, []string{
		"-duration", "8s", "-warmup", "2s", "-sample", "1s", "-churn", "1s",
		"-rate", "100", "-callers", "8", "-conns", "2", "-streams", "2",
		"-check=false", "-out", out,
	}, &stdout, &stderr)
	t.Logf("stderr:\n%s", stderr.String())
	if err != nil {
		t.Fatalf("soak: %v\nsummary:\n%s", err, stdout.String())
	}

	summary := stdout.String()
	for _, want := range []string{"| RSS |", "| heap in use |", "| goroutines |", "| unary calls by code |", "Churn actions: "} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	if saved, err := os.ReadFile(filepath.Join(out, "summary.md")); err != nil || string(saved) != summary {
		t.Errorf("summary.md differs from the printed summary (%v)", err)
	}
	for _, file := range []string{"soak.png", "goroutines-warm.txt", "goroutines-end.txt", "heap-end.pb.gz", "logs/quaestor.log"} {
		if fi, err := os.Stat(filepath.Join(out, file)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: missing or empty (%v)", file, err)
		}
	}

	samples := readCSV(t, filepath.Join(out, "samples.csv"))
	if len(samples) < 6 {
		t.Fatalf("samples.csv has %d samples, want at least 6", len(samples))
	}
	last := samples[len(samples)-1]
	for _, col := range []string{"rss_bytes", "heap_inuse_min_bytes", "goroutines_min", "calls_total"} {
		if v, err := strconv.ParseFloat(last[col], 64); err != nil || v <= 0 {
			t.Errorf("last sample's %s = %q, want a positive number", col, last[col])
		}
	}
	actions := map[string]bool{}
	for _, e := range readCSV(t, filepath.Join(out, "events.csv")) {
		if e["kind"] == "churn" {
			actions[e["what"]] = true
		}
	}
	for _, want := range []string{actionAdd, actionKill, actionFlap, actionDelete, actionStop} {
		if !actions[want] {
			t.Errorf("events.csv has no churn action %q (it has %v)", want, actions)
		}
	}
	if left := childProcesses(t); len(left) > 0 {
		t.Errorf("processes left after the soak: %v", left)
	}
}

// readCSV reads a CSV file with a header into one map per row.
func readCSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var rows []map[string]string
	for _, rec := range records[1:] {
		row := make(map[string]string)
		for i, name := range records[0] {
			if i < len(rec) {
				row[name] = rec[i]
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// childProcesses lists the processes whose parent is this one.
func childProcesses(t *testing.T) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getpid())
	var children []string
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after
		// its closing parenthesis.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(data[i+1:]))
		if len(fields) > 1 && fields[1] == me {
			children = append(children, strings.TrimSpace(string(data[:i+1])))
		}
	}
	return children
}
