//go:build linux

package main

import (
	"os"
	"slices"
	"testing"
	"time"
)

func TestStatusField(t *testing.T) {
	status := "Name:\tbench\nVmPeak:\t  123456 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n"
	tests := []struct {
		name   string
		field  string
		want   int64
		wantOK bool
	}{
		{"peak", "VmHWM", 20480, true},
		{"rss", "VmRSS", 10240, true},
		{"missing", "VmSwap", 0, false},
		{"not a number", "Name", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := statusField(status, tt.field)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("statusField(%q) = %d, %v, want %d, %v", tt.field, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestOwnProcessStats reads this test process's /proc entries: its CPU
// time, its parent, its peak memory, and that resetting the peak works.
func TestOwnProcessStats(t *testing.T) {
	pid := os.Getpid()
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != os.Getppid() {
		t.Errorf("ppid = %d, want %d", st.ppid, os.Getppid())
	}
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; { // some user time, in ticks of 10 ms
	}
	if cpu, ok := treeCPUTime([]int{pid}); !ok || cpu.user <= 0 || cpu.system < 0 {
		t.Errorf("treeCPUTime = %+v, %v: want user time and no negative system time", cpu, ok)
	}
	if !resetPeakMemory([]int{pid}) {
		t.Error("resetPeakMemory failed")
	}
	if peak, ok := peakMemory([]int{pid}); !ok || peak <= 0 {
		t.Errorf("peakMemory = %d, %v, want a positive size", peak, ok)
	}
	if tree := processTree(os.Getppid()); !slices.Contains(tree, pid) {
		t.Errorf("processTree(parent) = %v, lacks this process %d", tree, pid)
	}
}
