//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// processTree returns pid and every descendant of it (nginx's workers
// are children of its master), read from /proc.
func processTree(pid int) []int {
	parents := make(map[int][]int)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := readStat(child)
		if err != nil {
			continue
		}
		parents[stat.ppid] = append(parents[stat.ppid], child)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, parents[tree[i]]...)
	}
	return tree
}

type procStat struct {
	ppid int
	cpu  cpuTimes
}

// readStat reads the parent and the CPU time of pid from /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after it start past the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is the state (field 3); ppid is field 4, utime 14, stime 15.
	if len(fields) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	ppid, err1 := strconv.Atoi(fields[1])
	utime, err2 := strconv.ParseInt(fields[11], 10, 64)
	stime, err3 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unreadable fields", pid)
	}
	return procStat{ppid: ppid, cpu: cpuTimes{
		user:   time.Duration(utime) * time.Second / clockTicks,
		system: time.Duration(stime) * time.Second / clockTicks,
	}}, nil
}

// treeCPUTime returns the CPU time used so far by the processes pids, and
// whether it could be read for all of them.
func treeCPUTime(pids []int) (cpuTimes, bool) {
	var total cpuTimes
	for _, pid := range pids {
		st, err := readStat(pid)
		if err != nil {
			return cpuTimes{}, false
		}
		total.user += st.cpu.user
		total.system += st.cpu.system
	}
	return total, len(pids) > 0
}

// resetPeakMemory resets the resident-set high-water mark (VmHWM) of pids
// by writing 5 to /proc/<pid>/clear_refs.
func resetPeakMemory(pids []int) bool {
	for _, pid := range pids {
		if err := os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("5"), 0); err != nil {
			return false
		}
	}
	return len(pids) > 0
}

// peakMemory returns the sum of the VmHWM of pids (for nginx, master and
// workers), in bytes, and whether it could be read for all of them.
func peakMemory(pids []int) (int64, bool) {
	var total int64
	for _, pid := range pids {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			return 0, false
		}
		kb, ok := statusField(string(data), "VmHWM")
		if !ok {
			return 0, false
		}
		total += kb << 10
	}
	return total, len(pids) > 0
}

// statusField returns the value in kB of a "Name:  123 kB" line of
// /proc/<pid>/status.
func statusField(status, name string) (int64, bool) {
	for line := range strings.SplitSeq(status, "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok || key != name {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		return n, err == nil
	}
	return 0, false
}
