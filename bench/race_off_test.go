//go:build !race

package main

// quaestorBuildFlags: see race_on_test.go.
var quaestorBuildFlags []string
