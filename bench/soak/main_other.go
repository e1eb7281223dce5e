//go:build !linux

// Command soak runs quaestor under load and backend churn; it reads the
// proxy's memory from /proc and signals its backends, so it runs on Linux
// only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "soak: runs on Linux only (it reads /proc and signals its backends)")
	os.Exit(2)
}
