//go:build race

package main

// quaestorBuildFlags builds the quaestor under test with the race
// detector when the tests run with it: the harness test drives the
// proxy's engine with real load from several processes.
var quaestorBuildFlags = []string{"-race"}
