//go:build windows

package supervisor

import (
	"errors"

	"golang.org/x/sys/windows"
)

// isAddrInUse reports whether err is a listen failing because another
// socket holds the address (or forbids sharing it).
func isAddrInUse(err error) bool {
	return errors.Is(err, windows.WSAEADDRINUSE) || errors.Is(err, windows.WSAEACCES)
}
