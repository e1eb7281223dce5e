package service

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Spec describes the service to install.
type Spec struct {
	// Name is the service's name: the systemd unit is Name + ".service",
	// the Windows service is Name. Letters, digits, '_', '.' and '-', at
	// most 128 characters, starting with a letter or digit. Default
	// "quaestor".
	Name string
	// DisplayName is the short human-readable title: systemd's
	// Description=, the Windows service's display name. Default
	// "quaestor gRPC gateway".
	DisplayName string
	// Description is a longer explanation: a comment at the top of the
	// systemd unit, the Windows service's description. Optional.
	Description string
	// Executable is the quaestor binary the service runs. Default: this
	// process's executable (os.Executable) with symlinks resolved. A given
	// path is made absolute but its symlinks are kept, so a symlink swapped
	// on upgrade keeps working. It must exist.
	Executable string
	// Args are the arguments after the executable, for example
	// ["run", "-c", "/etc/quaestor/quaestor.yaml"]. The service does not
	// start where the installer ran, so any path among them must be
	// absolute: the caller makes the config path absolute.
	Args []string
	// WorkingDir is the service's working directory; Install makes it
	// absolute and checks that it is a directory. Default: the service
	// manager's (/ for systemd). Windows services have no such setting:
	// there it is not applied, and Install's message says so.
	WorkingDir string
	// User is the account the service runs as. systemd only: Install
	// refuses it on Windows rather than silently running as LocalSystem.
	// Default: root.
	User string
	// StopTimeout is how long systemd waits after SIGTERM before it kills
	// what is left (TimeoutStopSec=). Keep it longer than quaestor's drain
	// (proxy.drain_timeout, default 30s) plus the time its supervised
	// children have to stop (supervisor.stop_timeout, default 10s).
	// Rounded up to whole seconds. systemd only. Default 60s.
	StopTimeout time.Duration
}

// InstallOptions tune Install and Uninstall.
type InstallOptions struct {
	// UnitDir is the directory of systemd units (Linux). Default
	// "/etc/systemd/system".
	UnitDir string
	// Systemctl is the systemctl command Install and Uninstall run
	// (Linux). Default "systemctl". NoSystemctl ("-") runs nothing: only
	// the unit file is written or removed, and the message says what to
	// run by hand.
	Systemctl string
	// Stdout and Stderr receive systemctl's output as it runs; nil
	// discards it. A failing command's output is also quoted in the error.
	Stdout, Stderr io.Writer
	// Force lets Install replace a unit or Windows service of the same
	// name that differs from the one it would install (the service is then
	// restarted), and lets Uninstall remove a unit that Install did not
	// write.
	Force bool
}

// Defaults applied to a zero Spec and InstallOptions.
const (
	DefaultName        = "quaestor"
	DefaultDisplayName = "quaestor gRPC gateway"
	DefaultStopTimeout = 60 * time.Second
	DefaultUnitDir     = "/etc/systemd/system"
	DefaultSystemctl   = "systemctl"
	// NoSystemctl as InstallOptions.Systemctl runs no systemctl command.
	NoSystemctl = "-"

	// restartDelay is how long the service manager waits before it
	// restarts a failed quaestor: systemd's RestartSec=, the delay of the
	// Windows recovery actions.
	restartDelay = 5 * time.Second
	maxNameLen   = 128
)

// withDefaults fills the fields whose defaults need no system call, so
// that Unit stays a pure function of its Spec.
func (s Spec) withDefaults() Spec {
	if s.Name == "" {
		s.Name = DefaultName
	}
	if s.DisplayName == "" {
		s.DisplayName = DefaultDisplayName
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = DefaultStopTimeout
	}
	return s
}

// resolve applies every default, makes the paths absolute, checks that
// they exist and validates the fields. Errors name the field and value.
func (s Spec) resolve() (Spec, error) {
	s = s.withDefaults()
	if err := checkName(s.Name); err != nil {
		return s, err
	}
	if s.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return s, fmt.Errorf("finding this executable: %w", err)
		}
		if exe, err = filepath.EvalSymlinks(exe); err != nil {
			return s, fmt.Errorf("resolving this executable: %w", err)
		}
		s.Executable = exe
	}
	exe, err := filepath.Abs(s.Executable)
	if err != nil {
		return s, fmt.Errorf("executable %q: %w", s.Executable, err)
	}
	s.Executable = exe
	if fi, err := os.Stat(exe); err != nil {
		return s, fmt.Errorf("executable: %w", err)
	} else if fi.IsDir() {
		return s, fmt.Errorf("executable %q is a directory", exe)
	}
	if s.WorkingDir != "" {
		dir, err := filepath.Abs(s.WorkingDir)
		if err != nil {
			return s, fmt.Errorf("working directory %q: %w", s.WorkingDir, err)
		}
		s.WorkingDir = dir
		if fi, err := os.Stat(dir); err != nil {
			return s, fmt.Errorf("working directory: %w", err)
		} else if !fi.IsDir() {
			return s, fmt.Errorf("working directory %q is not a directory", dir)
		}
	}
	if s.StopTimeout < time.Second {
		return s, fmt.Errorf("stop timeout %v is shorter than 1s", s.StopTimeout)
	}
	for _, f := range []struct{ field, value string }{
		{"display name", s.DisplayName},
		{"description", s.Description},
		{"executable", s.Executable},
		{"working directory", s.WorkingDir},
		{"user", s.User},
	} {
		if err := checkText(f.field, f.value); err != nil {
			return s, err
		}
	}
	for i, arg := range s.Args {
		// Other control characters are escaped in the unit; NUL cannot
		// reach a process's argv at all.
		if !utf8.ValidString(arg) || strings.ContainsRune(arg, 0) {
			return s, fmt.Errorf("argument %d %q is not valid UTF-8 text", i+1, arg)
		}
	}
	return s, nil
}

// checkName accepts names that are valid, unescaped, as both a systemd
// unit name and a Windows service name, and cannot leave UnitDir.
func checkName(name string) error {
	if strings.HasSuffix(name, ".service") {
		return fmt.Errorf("service name %q: give it without the .service suffix", name)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("service name %q is longer than %d characters", name, maxNameLen)
	}
	for i, r := range name {
		ok := r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			i > 0 && (r == '_' || r == '.' || r == '-'))
		if !ok {
			return fmt.Errorf("service name %q: only letters, digits, '_', '.' and '-' are allowed, starting with a letter or digit", name)
		}
	}
	if name == "" {
		return fmt.Errorf("service name is empty")
	}
	return nil
}

// checkText rejects what no service manager stores faithfully: invalid
// UTF-8 and control characters (a newline would end a unit file's line).
func checkText(field, value string) error {
	if !utf8.ValidString(value) {
		return fmt.Errorf("%s %q is not valid UTF-8", field, value)
	}
	if strings.ContainsFunc(value, unicode.IsControl) {
		return fmt.Errorf("%s %q contains a control character", field, value)
	}
	return nil
}
