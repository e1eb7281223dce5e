package service

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestUnit(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{
			name: "defaults",
			spec: Spec{
				Executable: "/usr/local/bin/quaestor",
				Args:       []string{"run", "-c", "/etc/quaestor/quaestor.yaml"},
			},
			want: "# Installed by `quaestor service install`; remove it with `quaestor service uninstall`.\n" +
				"\n" +
				"[Unit]\n" +
				"Description=quaestor gRPC gateway\n" +
				"Wants=network-online.target\n" +
				"After=network-online.target\n" +
				"\n" +
				"[Service]\n" +
				"Type=simple\n" +
				"ExecStart=/usr/local/bin/quaestor run -c /etc/quaestor/quaestor.yaml\n" +
				"Restart=on-failure\n" +
				"RestartSec=5\n" +
				"# SIGTERM to quaestor only: it drains and stops its own children;\n" +
				"# whatever is left when it exits or TimeoutStopSec ends is killed.\n" +
				"KillMode=mixed\n" +
				"KillSignal=SIGTERM\n" +
				"TimeoutStopSec=60\n" +
				"LimitNOFILE=65536\n" +
				"\n" +
				"[Install]\n" +
				"WantedBy=multi-user.target\n",
		},
		{
			name: "every field, with characters systemd would interpret",
			spec: Spec{
				Name:        "quaestor-edge",
				DisplayName: "quaestor 100% edge",
				Description: "Edge gateway for the billing cluster.",
				Executable:  "/opt/quaestor 2/bin/quaestor",
				Args:        []string{"run", "-c", "/etc/quaestor/edge config.yaml", "--label", `say "hi" for $USER at 5%`},
				WorkingDir:  "/var/lib/quaestor %i",
				User:        "quaestor",
				StopTimeout: 90*time.Second + time.Millisecond,
			},
			want: "# Installed by `quaestor service install`; remove it with `quaestor service uninstall`.\n" +
				"# Edge gateway for the billing cluster.\n" +
				"\n" +
				"[Unit]\n" +
				"Description=quaestor 100%% edge\n" +
				"Wants=network-online.target\n" +
				"After=network-online.target\n" +
				"\n" +
				"[Service]\n" +
				"Type=simple\n" +
				`ExecStart="/opt/quaestor 2/bin/quaestor" run -c "/etc/quaestor/edge config.yaml" --label "say \"hi\" for $$USER at 5%%"` + "\n" +
				"WorkingDirectory=/var/lib/quaestor %%i\n" +
				"User=quaestor\n" +
				"Restart=on-failure\n" +
				"RestartSec=5\n" +
				"# SIGTERM to quaestor only: it drains and stops its own children;\n" +
				"# whatever is left when it exits or TimeoutStopSec ends is killed.\n" +
				"KillMode=mixed\n" +
				"KillSignal=SIGTERM\n" +
				"TimeoutStopSec=91\n" +
				"LimitNOFILE=65536\n" +
				"\n" +
				"[Install]\n" +
				"WantedBy=multi-user.target\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Unit(tt.spec)); diff != "" {
				t.Errorf("Unit() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExecStartQuoting checks each argument's spelling against systemd's
// command-line rules (systemd.service(5), "Command lines"): words split on
// whitespace, double quotes group, C escapes inside them, "%%" for a
// literal '%' and "$$" for a literal '$'.
func TestExecStartQuoting(t *testing.T) {
	tests := []struct {
		name string
		arg  string
		want string
	}{
		{name: "plain", arg: "run", want: `run`},
		{name: "flag with value", arg: "--listen=127.0.0.1:5150", want: `--listen=127.0.0.1:5150`},
		{name: "path", arg: "/etc/quaestor/quaestor.yaml", want: `/etc/quaestor/quaestor.yaml`},
		{name: "empty", arg: "", want: `""`},
		{name: "space", arg: "my config.yaml", want: `"my config.yaml"`},
		{name: "double quotes", arg: `a "b"`, want: `"a \"b\""`},
		{name: "single quote", arg: "it's", want: `"it's"`},
		{name: "backslash", arg: `C:\quaestor`, want: `"C:\\quaestor"`},
		{name: "percent", arg: "50%", want: `"50%%"`},
		{name: "specifier", arg: "%h/quaestor", want: `"%%h/quaestor"`},
		{name: "dollar", arg: "$HOME", want: `"$$HOME"`},
		{name: "braced variable", arg: "${HOME}/x", want: `"$${HOME}/x"`},
		{name: "lone semicolon", arg: ";", want: `";"`},
		{name: "newline and tab", arg: "a\nb\tc", want: `"a\nb\tc"`},
		{name: "other control character", arg: "a\x1bb", want: `"a\x1bb"`},
		{name: "non-ASCII", arg: "café", want: `"café"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quoteExecWord(tt.arg); got != tt.want {
				t.Errorf("quoteExecWord(%q) = %s, want %s", tt.arg, got, tt.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "quaestor")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "quaestor-current")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)

	tests := []struct {
		name    string
		spec    Spec
		want    Spec
		wantErr string
	}{
		{
			name: "defaults",
			spec: Spec{},
			want: Spec{Name: DefaultName, DisplayName: DefaultDisplayName, Executable: self, StopTimeout: DefaultStopTimeout},
		},
		{
			name: "relative paths made absolute, a given symlink kept",
			spec: Spec{Name: "edge", Executable: "quaestor-current", WorkingDir: ".", Args: []string{"run"}},
			want: Spec{Name: "edge", DisplayName: DefaultDisplayName, Executable: link, WorkingDir: dir, Args: []string{"run"}, StopTimeout: DefaultStopTimeout},
		},
		{name: "name with a slash", spec: Spec{Name: "../sshd"},
			wantErr: `service name "../sshd": only letters, digits, '_', '.' and '-' are allowed, starting with a letter or digit`},
		{name: "name with the suffix", spec: Spec{Name: "quaestor.service"},
			wantErr: `service name "quaestor.service": give it without the .service suffix`},
		{name: "name too long", spec: Spec{Name: strings.Repeat("q", 129)},
			wantErr: "is longer than 128 characters"},
		{name: "missing executable", spec: Spec{Executable: filepath.Join(dir, "nope")},
			wantErr: "executable: stat " + filepath.Join(dir, "nope") + ": "},
		{name: "executable is a directory", spec: Spec{Executable: dir},
			wantErr: `executable "` + dir + `" is a directory`},
		{name: "working directory is a file", spec: Spec{Executable: exe, WorkingDir: exe},
			wantErr: `working directory "` + exe + `" is not a directory`},
		{name: "newline in the display name", spec: Spec{Executable: exe, DisplayName: "quaestor\nExecStartPre=/bin/evil"},
			wantErr: `display name "quaestor\nExecStartPre=/bin/evil" contains a control character`},
		{name: "NUL in an argument", spec: Spec{Executable: exe, Args: []string{"run", "a\x00b"}},
			wantErr: `argument 2 "a\x00b" is not valid UTF-8 text`},
		{name: "stop timeout too short", spec: Spec{Executable: exe, StopTimeout: time.Millisecond},
			wantErr: "stop timeout 1ms is shorter than 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.spec.resolve()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolve() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resolve() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
