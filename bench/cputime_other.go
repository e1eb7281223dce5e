//go:build !unix

package main

import "time"

// processCPUTime is unknown on this platform: the report shows "–".
func processCPUTime() (time.Duration, bool) { return 0, false }
