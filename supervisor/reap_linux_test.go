package supervisor

import "golang.org/x/sys/unix"

// becomeSubreaper makes this process the parent of its descendants'
// orphans, as init is otherwise (and init may be slow to reap them).
func becomeSubreaper() error { return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }

// reap collects pid if it is a child of ours that has exited.
func reap(pid int) {
	var status unix.WaitStatus
	_, _ = unix.Wait4(pid, &status, unix.WNOHANG, nil)
}
