//go:build unix

package supervisor

import (
	"errors"
	"syscall"
)

// isAddrInUse reports whether err is a listen failing because another
// socket holds the address.
func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
