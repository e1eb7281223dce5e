package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2 // bad command line or configuration
)

// usageError marks errors that are the user's input, for exitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// execute runs the command line args and returns the exit code.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "quaestor:", err)
	var usage usageError
	if errors.As(err, &usage) {
		return exitUsage
	}
	return exitFailure
}

// globalFlags are the flags every command takes.
type globalFlags struct {
	configPath string
	sets       []string
	stderr     io.Writer
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	flags := globalFlags{stderr: stderr}
	root := &cobra.Command{
		Use:   "quaestor",
		Short: "A transparent gRPC gateway with server-side discovery",
		Long: `quaestor forwards every gRPC call it receives to a healthy instance of the
called service, chosen per call. Clients point at the proxy address and call
any service; no client change is needed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVarP(&flags.configPath, "config", "c", "configs/quaestor.yaml", "configuration file (YAML)")
	root.PersistentFlags().StringArrayVar(&flags.sets, "set", nil, "override a config key, e.g. --set proxy.listen=127.0.0.1:6000 (repeatable)")
	root.AddCommand(
		newRunCommand(&flags, stderr),
		newProxyCommand(&flags, stderr),
		newRegisterCommand(&flags, stderr),
		newDiscoverCommand(&flags, stdout),
		newStatusCommand(&flags, stdout),
		newSuperviseCommand(&flags, stderr),
		newServiceCommand(&flags, stdout, stderr),
		newVersionCommand(stdout),
	)
	return root
}

// loadConfig reads the configuration the global flags name, with
// QUAESTOR_ environment overrides.
func (f *globalFlags) loadConfig(environ []string) (config.Config, error) {
	cfg, err := config.Load(config.Source{Path: f.configPath, Environ: environ, Overrides: f.sets,
		Warn: func(msg string) { fmt.Fprintln(f.stderr, "quaestor: warning:", msg) }})
	if err != nil {
		return config.Config{}, usageError{err}
	}
	return cfg, nil
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(stdout, "quaestor", buildVersion())
			return nil
		},
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}
