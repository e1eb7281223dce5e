//go:build !linux

package supervisor

// becomeSubreaper does nothing: only Linux has subreapers; elsewhere init
// reaps the orphans.
func becomeSubreaper() error { return nil }

// reap does nothing: the orphans are init's.
func reap(int) {}
