//go:build linux

package service

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Install writes spec's systemd unit to {UnitDir}/{Name}.service (mode
// 0644), then runs `systemctl daemon-reload` and `systemctl enable --now
// {Name}`. It returns what it did, one step a line.
//
// An identical unit already in place is left alone ("already installed")
// and the two commands run again, so a failed install can be retried. A
// different unit is an error unless opts.Force; a forced replacement is
// followed by `systemctl enable` and `systemctl restart`, since enable
// --now does not restart a running service.
func Install(spec Spec, opts InstallOptions) (string, error) {
	opts = opts.withDefaults()
	spec, err := spec.resolve()
	if err != nil {
		return "", fmt.Errorf("service: installing %s: %w", spec.Name, err)
	}
	if err := checkSystemdSpec(spec); err != nil {
		return "", fmt.Errorf("service: installing %s: %w", spec.Name, err)
	}
	path := unitPath(opts, spec.Name)
	unit := Unit(spec)

	var done []string
	enable := [][]string{{"daemon-reload"}, {"enable", "--now", spec.Name}}
	existing, err := os.ReadFile(path)
	replacing := err == nil
	switch {
	case err == nil && string(existing) == unit:
		done = append(done, path+" already installed")
	case err == nil && !opts.Force:
		return "", fmt.Errorf("service: installing %s: %s exists and differs from the unit to install; uninstall it first, or force the overwrite", spec.Name, path)
	case err == nil || errors.Is(err, fs.ErrNotExist):
		if err := writeFileAtomic(path, []byte(unit)); err != nil {
			return "", fmt.Errorf("service: installing %s: %w", spec.Name, withRootHint(err))
		}
		if replacing {
			done = append(done, "replaced "+path)
			enable = [][]string{{"daemon-reload"}, {"enable", spec.Name}, {"restart", spec.Name}}
		} else {
			done = append(done, "wrote "+path)
		}
	default:
		return "", fmt.Errorf("service: installing %s: %w", spec.Name, withRootHint(err))
	}

	if opts.Systemctl == NoSystemctl {
		done = append(done, "systemctl not run; to start the service: "+commandLines(enable))
		return strings.Join(done, "\n"), nil
	}
	for _, args := range enable {
		if err := runSystemctl(opts, args...); err != nil {
			return "", fmt.Errorf("service: installing %s (%s): %w", spec.Name, strings.Join(done, "; "), err)
		}
		done = append(done, "ran "+commandLine(opts, args))
	}
	return strings.Join(done, "\n"), nil
}

// Uninstall runs `systemctl disable --now {name}`, removes
// {UnitDir}/{name}.service and runs `systemctl daemon-reload`. An empty name
// means DefaultName. A missing unit is an error, and so is a unit Install
// did not write, unless opts.Force.
func Uninstall(name string, opts InstallOptions) (string, error) {
	opts = opts.withDefaults()
	if name == "" {
		name = DefaultName
	}
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("service: uninstalling: %w", err)
	}
	path := unitPath(opts, name)
	unit, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("service: uninstalling %s: %s does not exist; is it installed under another name or unit directory?", name, path)
	}
	if err != nil {
		return "", fmt.Errorf("service: uninstalling %s: %w", name, withRootHint(err))
	}
	if !bytes.HasPrefix(unit, []byte(unitMarker)) && !opts.Force {
		return "", fmt.Errorf("service: uninstalling %s: %s was not written by `quaestor service install`; remove it by hand, or force the removal", name, path)
	}

	var done []string
	if opts.Systemctl != NoSystemctl {
		args := []string{"disable", "--now", name}
		if err := runSystemctl(opts, args...); err != nil {
			return "", fmt.Errorf("service: uninstalling %s: %w", name, err)
		}
		done = append(done, "ran "+commandLine(opts, args))
	}
	if err := os.Remove(path); err != nil {
		return "", fmt.Errorf("service: uninstalling %s (%s): %w", name, strings.Join(done, "; "), withRootHint(err))
	}
	done = append(done, "removed "+path)
	if opts.Systemctl == NoSystemctl {
		done = append(done, "systemctl not run; to stop the service: systemctl disable --now "+name+" && systemctl daemon-reload")
		return strings.Join(done, "\n"), nil
	}
	if err := runSystemctl(opts, "daemon-reload"); err != nil {
		return "", fmt.Errorf("service: uninstalling %s (%s): %w", name, strings.Join(done, "; "), err)
	}
	done = append(done, "ran "+commandLine(opts, []string{"daemon-reload"}))
	return strings.Join(done, "\n"), nil
}

func (o InstallOptions) withDefaults() InstallOptions {
	if o.UnitDir == "" {
		o.UnitDir = DefaultUnitDir
	}
	if o.Systemctl == "" {
		o.Systemctl = DefaultSystemctl
	}
	return o
}

func unitPath(opts InstallOptions, name string) string {
	return filepath.Join(opts.UnitDir, name+".service")
}

// checkSystemdSpec rejects what the unit cannot express faithfully.
func checkSystemdSpec(spec Spec) error {
	// The command path is not subject to variable expansion, and older
	// systemd does not expand specifiers in it either: no escape for '$'
	// or '%' there is right everywhere.
	if strings.ContainsAny(spec.Executable, "$%") {
		return fmt.Errorf("executable %q: a path with '$' or '%%' cannot be written into a systemd unit", spec.Executable)
	}
	// Other settings are taken verbatim to the end of the line, which
	// systemd trims, and a trailing backslash would join the next line.
	for _, f := range []struct{ field, value string }{
		{"display name", spec.DisplayName},
		{"working directory", spec.WorkingDir},
		{"user", spec.User},
	} {
		if strings.TrimSpace(f.value) != f.value || strings.HasSuffix(f.value, `\`) {
			return fmt.Errorf("%s %q: leading or trailing spaces or a trailing backslash cannot be written into a systemd unit", f.field, f.value)
		}
	}
	if strings.ContainsAny(spec.User, " \"'\\$") {
		return fmt.Errorf("user %q is not a user name", spec.User)
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so systemd never reads a half-written unit.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(0o644)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// runSystemctl runs systemctl with args; its error names the command and
// quotes what it printed.
func runSystemctl(opts InstallOptions, args ...string) error {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(opts.Systemctl, args...)
	cmd.Stdout = teeTo(&stdout, opts.Stdout)
	cmd.Stderr = teeTo(&stderr, opts.Stderr)
	if err := cmd.Run(); err != nil {
		output := strings.TrimSpace(stderr.String())
		if output == "" {
			output = strings.TrimSpace(stdout.String())
		}
		if output != "" {
			return fmt.Errorf("running %s: %w: %s", commandLine(opts, args), err, output)
		}
		return fmt.Errorf("running %s: %w", commandLine(opts, args), err)
	}
	return nil
}

func teeTo(buf *bytes.Buffer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(buf, w)
}

func commandLine(opts InstallOptions, args []string) string {
	return "`" + opts.Systemctl + " " + strings.Join(args, " ") + "`"
}

// commandLines spells cmds for a person to run, with the usual systemctl.
func commandLines(cmds [][]string) string {
	lines := make([]string, len(cmds))
	for i, args := range cmds {
		lines[i] = DefaultSystemctl + " " + strings.Join(args, " ")
	}
	return strings.Join(lines, " && ")
}

// withRootHint adds the likely cure to a permission error: unit files and
// systemctl belong to root.
func withRootHint(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w (run as root)", err)
	}
	return err
}
