//go:build !linux && !windows

package loadreport

import "errors"

// errUnsupported is what the machine readers return here.
var errUnsupported = errors.New("sampling CPU and memory is not supported on this operating system")

// systemMachine has no reader for this system: CPU and memory are reported
// as 0, and the failure is logged once. Calls in flight, the known load rate,
// QPS and EPS are still reported.
func systemMachine() machine {
	return machine{
		cpuTimes:      func() (cpuTimes, error) { return cpuTimes{}, errUnsupported },
		memoryPercent: func() (float64, error) { return 0, errUnsupported },
	}
}
