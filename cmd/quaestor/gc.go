package main

import (
	"os"
	"runtime/debug"
)

// defaultGCPercent is quaestor's GOGC when the environment sets none. The
// proxy's live heap is small (tens of MiB) and nearly all it allocates
// lives for one call, so collecting at 5× the live heap instead of 2×
// trades a few tens of MiB for about a fifth less CPU per call (see
// bench/optimizations.md). GOGC in the environment still wins.
const defaultGCPercent = 400

// tuneGC sets the GC percent unless GOGC is set.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}
