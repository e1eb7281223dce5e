package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// resolveExecutable returns the absolute path of the program name names: a
// path, relative to quaestor's working directory, or a bare name looked up
// in PATH. The error says what is wrong with it.
func resolveExecutable(name string) (string, error) {
	if !strings.ContainsAny(name, `/\`) {
		path, err := exec.LookPath(name)
		if err != nil {
			if errors.Is(err, exec.ErrNotFound) {
				return "", fmt.Errorf("%q not found in PATH", name)
			}
			return "", fmt.Errorf("%q: %w", name, err)
		}
		return filepath.Abs(path)
	}
	path, err := exec.LookPath(name)
	if err != nil {
		info, statErr := os.Stat(name)
		switch {
		case errors.Is(statErr, fs.ErrNotExist):
			return "", fmt.Errorf("%q not found", name)
		case statErr != nil:
			return "", fmt.Errorf("%q: %w", name, statErr)
		case info.IsDir():
			return "", fmt.Errorf("%q is a directory", name)
		default:
			return "", fmt.Errorf("%q is not executable (mode %s)", name, info.Mode())
		}
	}
	return filepath.Abs(path)
}
