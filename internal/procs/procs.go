// Package procs sets how many threads run Go code at once (GOMAXPROCS) in
// a process that shares its machine with the services it serves.
//
// Go runs Go code on as many threads as the machine has cores. A proxy on
// the machine of its backends rarely keeps them all busy, and with more
// threads than work its goroutines are woken on one thread and run on
// another, each hand-off a system call and a context switch. Measured on
// 2 cores, with a load generator and a backend on the same cores, quaestor
// on one thread spent about 20 % less CPU per call than on two, with the
// same throughput (bench/optimizations.md).
package procs

import (
	"os"
	"runtime"
)

// Share sets GOMAXPROCS to half the CPUs the runtime found at start
// (rounded up, so one of one or two, two of three or four), unless the
// GOMAXPROCS environment variable is set: the user's setting stands. It
// returns the value in effect. The CPUs found at start account for a
// cgroup's CPU limit; once set, GOMAXPROCS no longer follows changes of
// that limit. Call it once, early in main.
func Share() int {
	n := Default()
	if n != runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(n)
	}
	return n
}

// Default is the GOMAXPROCS Share sets in a process that has not called
// it: the environment's, when set, or else half the CPUs.
func Default() int {
	if _, ok := os.LookupEnv("GOMAXPROCS"); ok {
		return runtime.GOMAXPROCS(0)
	}
	return half(runtime.GOMAXPROCS(0))
}

// half is the share of cpus Share takes.
func half(cpus int) int { return max(1, (cpus+1)/2) }
