//go:build !linux

package main

// Without /proc, the proxies' CPU time and memory are not measured.

func processTree(pid int) []int               { return []int{pid} }
func treeCPUTime(pids []int) (cpuTimes, bool) { return cpuTimes{}, false }
func resetPeakMemory(pids []int) bool         { return false }
func peakMemory(pids []int) (int64, bool)     { return 0, false }
