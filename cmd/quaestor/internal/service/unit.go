package service

import (
	"fmt"
	"strings"
	"time"
)

// unitMarker opens every unit Install writes; Uninstall refuses to remove
// a unit without it unless forced, so a mistyped name cannot take down
// another service.
const unitMarker = "# Installed by `quaestor service install`; remove it with `quaestor service uninstall`.\n"

// Unit returns the systemd unit for spec, with Name, DisplayName and
// StopTimeout defaulted. It does not validate spec nor touch the file
// system: Install resolves and checks the spec before calling it.
//
// Values are escaped for systemd: '%' is doubled everywhere (specifier
// expansion), and each ExecStart word that is not plainly safe is
// double-quoted with '\' and '"' backslash-escaped, '$' doubled (variable
// expansion) and control characters written as C escapes.
func Unit(spec Spec) string {
	spec = spec.withDefaults()
	var b strings.Builder
	b.WriteString(unitMarker)
	if spec.Description != "" {
		b.WriteString("# " + strings.ReplaceAll(spec.Description, "\n", "\n# ") + "\n")
	}

	b.WriteString("\n[Unit]\n")
	fmt.Fprintf(&b, "Description=%s\n", escapeSpecifiers(spec.DisplayName))
	// quaestor dials etcd and binds its listeners at start-up: wait until
	// the network is configured, not merely until its stack is up.
	b.WriteString("Wants=network-online.target\n")
	b.WriteString("After=network-online.target\n")

	b.WriteString("\n[Service]\n")
	b.WriteString("Type=simple\n")
	words := make([]string, 0, 1+len(spec.Args))
	words = append(words, quoteExecWord(spec.Executable))
	for _, arg := range spec.Args {
		words = append(words, quoteExecWord(arg))
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(words, " "))
	if spec.WorkingDir != "" {
		fmt.Fprintf(&b, "WorkingDirectory=%s\n", escapeSpecifiers(spec.WorkingDir))
	}
	if spec.User != "" {
		fmt.Fprintf(&b, "User=%s\n", escapeSpecifiers(spec.User))
	}
	b.WriteString("Restart=on-failure\n")
	fmt.Fprintf(&b, "RestartSec=%d\n", int(restartDelay/time.Second))
	// KillMode=mixed: on stop, SIGTERM goes to quaestor alone, which
	// drains its calls and then stops its supervised children itself,
	// each with its own grace period (supervisor.stop_timeout). The
	// default, control-group, would signal the children at the same moment
	// and take them away while calls to them are still draining. SIGKILL
	// still goes to the whole control group once quaestor has exited or
	// TimeoutStopSec runs out, so no child outlives the service.
	b.WriteString("# SIGTERM to quaestor only: it drains and stops its own children;\n")
	b.WriteString("# whatever is left when it exits or TimeoutStopSec ends is killed.\n")
	b.WriteString("KillMode=mixed\n")
	b.WriteString("KillSignal=SIGTERM\n")
	fmt.Fprintf(&b, "TimeoutStopSec=%d\n", int((spec.StopTimeout+time.Second-1)/time.Second))
	// One descriptor per proxied connection and per backend connection.
	b.WriteString("LimitNOFILE=65536\n")

	b.WriteString("\n[Install]\n")
	b.WriteString("WantedBy=multi-user.target\n")
	return b.String()
}

// escapeSpecifiers keeps a value's '%' literal: systemd expands %-specifiers
// in most settings, in and out of quotes.
func escapeSpecifiers(s string) string {
	return strings.ReplaceAll(s, "%", "%%")
}

// quoteExecWord writes s as one word of an ExecStart= command line.
func quoteExecWord(s string) string {
	if s != "" && !strings.ContainsFunc(s, needsQuoting) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '%':
			b.WriteString("%%")
		case '$':
			b.WriteString("$$")
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// needsQuoting reports whether r is outside the characters an ExecStart
// word may hold bare. It is deliberately short: quoting a word that did not
// need it costs nothing.
func needsQuoting(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	case strings.ContainsRune("-_./:,=+@", r):
		return false
	}
	return true
}
