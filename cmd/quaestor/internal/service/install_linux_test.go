//go:build linux

package service

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeSystemctl writes a shell script that stands in for systemctl: it
// appends its arguments, one call a line, to a log file, prints what
// systemctl would, and fails the subcommand failOn (if any) the way
// systemctl does. It is a real process, the closest the test can get to
// systemctl: the real one needs a running systemd and root, which CI has
// not. It returns the script's path and a function returning the calls so
// far.
func fakeSystemctl(t *testing.T, failOn string) (path string, calls func() []string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	path = filepath.Join(dir, "systemctl")
	script := "#!/bin/sh\n" +
		"printf '%s\\n' \"$*\" >> '" + log + "'\n" +
		"if [ \"$1\" = '" + failOn + "' ]; then\n" +
		"  echo \"Failed to $1 unit: Access denied\" >&2\n" +
		"  exit 1\n" +
		"fi\n" +
		"if [ \"$1\" = enable ]; then\n" +
		"  echo \"Created symlink /etc/systemd/system/multi-user.target.wants/$3.service.\"\n" +
		"fi\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, func() []string {
		t.Helper()
		b, err := os.ReadFile(log)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if err := os.Remove(log); err != nil {
			t.Fatal(err)
		}
		return lines
	}
}

// testSpec returns a spec whose executable exists, in a directory with a
// space in its name so that ExecStart must quote it.
func testSpec(t *testing.T) Spec {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "quaestor bin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "quaestor")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Spec{
		Executable: exe,
		Args:       []string{"run", "-c", "/etc/quaestor/quaestor.yaml"},
		WorkingDir: t.TempDir(),
	}
}

func readUnit(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInstallUninstall(t *testing.T) {
	systemctl, calls := fakeSystemctl(t, "")
	var stdout bytes.Buffer
	opts := InstallOptions{UnitDir: t.TempDir(), Systemctl: systemctl, Stdout: &stdout}
	spec := testSpec(t)
	path := filepath.Join(opts.UnitDir, "quaestor.service")

	msg, err := Install(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantMsg := "wrote " + path + "\n" +
		"ran `" + systemctl + " daemon-reload`\n" +
		"ran `" + systemctl + " enable --now quaestor`"
	if msg != wantMsg {
		t.Errorf("Install() message:\n%s\nwant:\n%s", msg, wantMsg)
	}
	resolved, err := spec.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Unit(resolved), readUnit(t, path)); diff != "" {
		t.Errorf("unit file mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(readUnit(t, path), `ExecStart="`+spec.Executable+`" run -c /etc/quaestor/quaestor.yaml`+"\n") {
		t.Errorf("unit file does not quote the executable:\n%s", readUnit(t, path))
	}
	if fi, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o644 {
		t.Errorf("unit file mode = %v, want 0644", fi.Mode().Perm())
	}
	if diff := cmp.Diff([]string{"daemon-reload", "enable --now quaestor"}, calls()); diff != "" {
		t.Errorf("systemctl calls mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(stdout.String(), "Created symlink") {
		t.Errorf("systemctl's output did not reach Stdout: %q", stdout.String())
	}
	if entries, err := os.ReadDir(opts.UnitDir); err != nil || len(entries) != 1 {
		t.Errorf("unit directory holds %v (%v), want only the unit", entries, err)
	}

	// The same unit again: nothing written, systemctl run again so that
	// a failed install can be retried.
	msg, err = Install(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg, path+" already installed\n") {
		t.Errorf("second Install() message = %q, want it to say already installed", msg)
	}
	if diff := cmp.Diff([]string{"daemon-reload", "enable --now quaestor"}, calls()); diff != "" {
		t.Errorf("systemctl calls mismatch (-want +got):\n%s", diff)
	}

	msg, err = Uninstall("", opts)
	if err != nil {
		t.Fatal(err)
	}
	wantMsg = "ran `" + systemctl + " disable --now quaestor`\n" +
		"removed " + path + "\n" +
		"ran `" + systemctl + " daemon-reload`"
	if msg != wantMsg {
		t.Errorf("Uninstall() message:\n%s\nwant:\n%s", msg, wantMsg)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unit file after Uninstall: %v, want it gone", err)
	}
	if diff := cmp.Diff([]string{"disable --now quaestor", "daemon-reload"}, calls()); diff != "" {
		t.Errorf("systemctl calls mismatch (-want +got):\n%s", diff)
	}
}

func TestInstallRefusesADifferentUnit(t *testing.T) {
	systemctl, calls := fakeSystemctl(t, "")
	opts := InstallOptions{UnitDir: t.TempDir(), Systemctl: systemctl}
	spec := testSpec(t)
	if _, err := Install(spec, opts); err != nil {
		t.Fatal(err)
	}
	calls()
	path := filepath.Join(opts.UnitDir, "quaestor.service")
	before := readUnit(t, path)

	spec.Args = []string{"run", "-c", "/etc/quaestor/other.yaml"}
	_, err := Install(spec, opts)
	want := "service: installing quaestor: " + path + " exists and differs from the unit to install; uninstall it first, or force the overwrite"
	if err == nil || err.Error() != want {
		t.Fatalf("Install() over a different unit: error = %v, want %q", err, want)
	}
	if readUnit(t, path) != before {
		t.Error("the refused Install changed the unit file")
	}
	if got := calls(); got != nil {
		t.Errorf("the refused Install ran systemctl: %q", got)
	}

	opts.Force = true
	msg, err := Install(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg, "replaced "+path+"\n") {
		t.Errorf("forced Install() message = %q, want it to say replaced", msg)
	}
	if !strings.Contains(readUnit(t, path), "/etc/quaestor/other.yaml") {
		t.Errorf("forced Install did not write the new unit:\n%s", readUnit(t, path))
	}
	// enable --now would leave the running service on its old command line.
	if diff := cmp.Diff([]string{"daemon-reload", "enable quaestor", "restart quaestor"}, calls()); diff != "" {
		t.Errorf("systemctl calls mismatch (-want +got):\n%s", diff)
	}
}

func TestUninstallRefusals(t *testing.T) {
	systemctl, calls := fakeSystemctl(t, "")
	opts := InstallOptions{UnitDir: t.TempDir(), Systemctl: systemctl}

	_, err := Uninstall("quaestor", opts)
	want := "service: uninstalling quaestor: " + filepath.Join(opts.UnitDir, "quaestor.service") +
		" does not exist; is it installed under another name or unit directory?"
	if err == nil || err.Error() != want {
		t.Errorf("Uninstall() of a missing unit: error = %v, want %q", err, want)
	}

	foreign := filepath.Join(opts.UnitDir, "sshd.service")
	if err := os.WriteFile(foreign, []byte("[Service]\nExecStart=/usr/sbin/sshd -D\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Uninstall("sshd", opts)
	want = "service: uninstalling sshd: " + foreign + " was not written by `quaestor service install`; remove it by hand, or force the removal"
	if err == nil || err.Error() != want {
		t.Errorf("Uninstall() of a foreign unit: error = %v, want %q", err, want)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("the refused Uninstall removed the unit: %v", err)
	}

	_, err = Uninstall("../sshd", opts)
	if err == nil || !strings.Contains(err.Error(), `service name "../sshd"`) {
		t.Errorf("Uninstall() of a path: error = %v, want a bad service name", err)
	}
	if got := calls(); got != nil {
		t.Errorf("the refused Uninstalls ran systemctl: %q", got)
	}

	opts.Force = true
	if _, err := Uninstall("sshd", opts); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(foreign); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("forced Uninstall left the unit: %v", err)
	}
}

func TestSystemctlFailure(t *testing.T) {
	systemctl, calls := fakeSystemctl(t, "enable")
	opts := InstallOptions{UnitDir: t.TempDir(), Systemctl: systemctl}
	path := filepath.Join(opts.UnitDir, "quaestor.service")

	_, err := Install(testSpec(t), opts)
	want := "service: installing quaestor (wrote " + path + "; ran `" + systemctl + " daemon-reload`): " +
		"running `" + systemctl + " enable --now quaestor`: exit status 1: Failed to enable unit: Access denied"
	if err == nil || err.Error() != want {
		t.Errorf("Install() error = %v\nwant %s", err, want)
	}
	// The unit stays, so the install can be retried once systemctl works.
	if _, err := os.Stat(path); err != nil {
		t.Errorf("unit file after the failed enable: %v", err)
	}
	if diff := cmp.Diff([]string{"daemon-reload", "enable --now quaestor"}, calls()); diff != "" {
		t.Errorf("systemctl calls mismatch (-want +got):\n%s", diff)
	}

	systemctl, calls = fakeSystemctl(t, "disable")
	opts.Systemctl = systemctl
	_, err = Uninstall("quaestor", opts)
	want = "service: uninstalling quaestor: running `" + systemctl + " disable --now quaestor`: exit status 1: Failed to disable unit: Access denied"
	if err == nil || err.Error() != want {
		t.Errorf("Uninstall() error = %v\nwant %s", err, want)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("unit file after the failed disable: %v", err)
	}
	if diff := cmp.Diff([]string{"disable --now quaestor"}, calls()); diff != "" {
		t.Errorf("systemctl calls mismatch (-want +got):\n%s", diff)
	}
}

func TestNoSystemctl(t *testing.T) {
	opts := InstallOptions{UnitDir: t.TempDir(), Systemctl: NoSystemctl}
	path := filepath.Join(opts.UnitDir, "edge.service")
	spec := testSpec(t)
	spec.Name = "edge"

	msg, err := Install(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := "wrote " + path + "\n" +
		"systemctl not run; to start the service: systemctl daemon-reload && systemctl enable --now edge"
	if msg != want {
		t.Errorf("Install() message:\n%s\nwant:\n%s", msg, want)
	}
	msg, err = Uninstall("edge", opts)
	if err != nil {
		t.Fatal(err)
	}
	want = "removed " + path + "\n" +
		"systemctl not run; to stop the service: systemctl disable --now edge && systemctl daemon-reload"
	if msg != want {
		t.Errorf("Uninstall() message:\n%s\nwant:\n%s", msg, want)
	}
}

func TestInstallRejectsWhatAUnitCannotHold(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Spec, *InstallOptions)
		wantErr string
	}{
		{name: "trailing backslash", edit: func(s *Spec, _ *InstallOptions) { s.DisplayName = `quaestor\` },
			wantErr: `display name "quaestor\\": leading or trailing spaces or a trailing backslash cannot be written into a systemd unit`},
		{name: "user with a space", edit: func(s *Spec, _ *InstallOptions) { s.User = "quaestor admin" },
			wantErr: `user "quaestor admin" is not a user name`},
		{name: "dollar in the executable", edit: func(s *Spec, _ *InstallOptions) {
			s.Executable = filepath.Join(t.TempDir(), "quaestor$1")
			if err := os.WriteFile(s.Executable, nil, 0o755); err != nil {
				t.Fatal(err)
			}
		}, wantErr: `a path with '$' or '%' cannot be written into a systemd unit`},
		{name: "missing unit directory", edit: func(_ *Spec, o *InstallOptions) { o.UnitDir = filepath.Join(o.UnitDir, "nope") },
			wantErr: "nope/quaestor.service: open "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec(t)
			opts := InstallOptions{UnitDir: t.TempDir(), Systemctl: NoSystemctl}
			tt.edit(&spec, &opts)
			_, err := Install(spec, opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Install() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
