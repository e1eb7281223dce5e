//go:build linux

package main

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// stackCount is how many goroutines share one stack in two profiles.
type stackCount struct {
	stack     string // "where it waits ← how it started"
	warm, end int
}

// parseGoroutines reads a goroutine profile in its debug=1 text form
// ("N @ pcs" then "#\tpc\tfunc+off\tfile:line" lines) into counts by stack.
func parseGoroutines(text string) map[string]int {
	counts := make(map[string]int)
	var n int
	var funcs []string
	flush := func() {
		if n > 0 && len(funcs) > 0 {
			counts[describeStack(funcs)] += n
		}
		n, funcs = 0, nil
	}
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "#"):
			fields := strings.Fields(line)
			if len(fields) >= 3 {
				name, _, _ := strings.Cut(fields[2], "+0x")
				funcs = append(funcs, name)
			}
		case strings.Contains(line, " @ "):
			flush()
			n, _ = strconv.Atoi(strings.Fields(line)[0])
		default:
			flush()
		}
	}
	flush()
	return counts
}

// describeStack names a stack by its outermost frame, the function the
// goroutine runs: the frames inside move as it works (a loopy writer waits
// or writes), while a leak piles up goroutines started by one function.
func describeStack(funcs []string) string { return funcs[len(funcs)-1] }

// grownStacks returns the stacks with more goroutines at the end than at
// warm-up, most grown first, at most limit.
func grownStacks(warm, end map[string]int, limit int) []stackCount {
	var grown []stackCount
	for stack, n := range end {
		if n > warm[stack] {
			grown = append(grown, stackCount{stack: stack, warm: warm[stack], end: n})
		}
	}
	slices.SortFunc(grown, func(a, b stackCount) int {
		return cmp.Or(cmp.Compare(b.end-b.warm, a.end-a.warm), cmp.Compare(a.stack, b.stack))
	})
	if len(grown) > limit {
		grown = grown[:limit]
	}
	return grown
}
