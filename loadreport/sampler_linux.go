package loadreport

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// systemMachine reads /proc/stat and /proc/meminfo.
func systemMachine() machine {
	return machine{
		cpuTimes: func() (cpuTimes, error) {
			b, err := os.ReadFile("/proc/stat")
			if err != nil {
				return cpuTimes{}, err
			}
			return parseProcStat(string(b))
		},
		memoryPercent: func() (float64, error) {
			b, err := os.ReadFile("/proc/meminfo")
			if err != nil {
				return 0, err
			}
			return parseMeminfo(string(b))
		},
	}
}

// parseProcStat reads the machine-wide "cpu" line of /proc/stat: user, nice,
// system, idle, iowait, irq, softirq and steal jiffies (kernels before 2.6
// give only the first four). Busy is everything but idle and iowait. Guest
// and guest_nice follow steal but are already counted in user and nice.
func parseProcStat(stat string) (cpuTimes, error) {
	for line := range strings.Lines(stat) {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "cpu" {
			continue
		}
		values := fields[1:min(len(fields), 9)]
		if len(values) < 4 {
			return cpuTimes{}, fmt.Errorf("parsing /proc/stat: cpu line %q has %d values, want at least 4", strings.TrimSpace(line), len(values))
		}
		var t cpuTimes
		for i, field := range values {
			v, err := strconv.ParseUint(field, 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("parsing /proc/stat: cpu value %d: %w", i+1, err)
			}
			t.total += v
			if i != 3 && i != 4 { // idle, iowait
				t.busy += v
			}
		}
		return t, nil
	}
	return cpuTimes{}, errors.New("parsing /proc/stat: no cpu line")
}

// parseMeminfo returns the memory in use as a percentage: MemTotal minus
// MemAvailable, or, on kernels before 3.14 that lack MemAvailable, minus
// MemFree, Buffers and Cached.
func parseMeminfo(meminfo string) (float64, error) {
	kB := make(map[string]uint64, 5)
	for line := range strings.Lines(meminfo) {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch key {
		case "MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached":
		default:
			continue
		}
		value := strings.TrimSuffix(strings.TrimSpace(rest), " kB")
		v, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc/meminfo: %s: %w", key, err)
		}
		kB[key] = v
	}
	total := kB["MemTotal"]
	if total == 0 {
		return 0, errors.New("parsing /proc/meminfo: no MemTotal")
	}
	available, ok := kB["MemAvailable"]
	if !ok {
		available = kB["MemFree"] + kB["Buffers"] + kB["Cached"]
	}
	available = min(available, total)
	return float64(total-available) / float64(total) * 100, nil
}
