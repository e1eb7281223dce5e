package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/service"
)

func newServiceCommand(flags *globalFlags, stdout, stderr io.Writer) *cobra.Command {
	var (
		name, user  string
		force, noSC bool
		unitDir     string
	)
	cmd := &cobra.Command{
		Use:   "service install|uninstall",
		Short: "Install or remove quaestor as a system service (systemd unit, Windows service)",
	}
	install := &cobra.Command{
		Use:   "install",
		Short: "Install `quaestor run -c CONFIG` as a service that starts at boot",
		Long: `Install 'quaestor run' on the configuration given with -c (made absolute) as a
systemd unit (Linux) or a Windows service, enabled and started. On SIGTERM
(systemd) or a service stop (Windows) quaestor drains and stops its workers.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfgPath, err := filepath.Abs(flags.configPath)
			if err != nil {
				return usageError{err}
			}
			dir, err := filepath.Abs(".")
			if err != nil {
				return err
			}
			msg, err := service.Install(service.Spec{
				Name:        name,
				Description: "quaestor: transparent gRPC gateway with server-side discovery, supervisor and embedded etcd",
				Args:        []string{"run", "-c", cfgPath},
				WorkingDir:  dir,
				User:        user,
			}, installOptions(unitDir, noSC, force, stdout, stderr))
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, msg)
			return nil
		},
	}
	uninstall := &cobra.Command{
		Use:   "uninstall",
		Short: "Stop and remove the quaestor service",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			msg, err := service.Uninstall(name, installOptions(unitDir, noSC, force, stdout, stderr))
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, msg)
			return nil
		},
	}
	for _, c := range []*cobra.Command{install, uninstall} {
		c.Flags().StringVar(&name, "name", service.DefaultName, "service name")
		c.Flags().BoolVar(&force, "force", false, "replace (or remove) a service that differs from (or was not written by) this command")
		c.Flags().StringVar(&unitDir, "unit-dir", service.DefaultUnitDir, "systemd unit directory (Linux)")
		c.Flags().BoolVar(&noSC, "no-systemctl", false, "write or remove the unit file only; do not run systemctl (Linux)")
	}
	install.Flags().StringVar(&user, "user", "", "user the service runs as (systemd)")
	cmd.AddCommand(install, uninstall)
	return cmd
}

func installOptions(unitDir string, noSystemctl, force bool, stdout, stderr io.Writer) service.InstallOptions {
	opts := service.InstallOptions{UnitDir: unitDir, Force: force, Stdout: stdout, Stderr: stderr}
	if noSystemctl {
		opts.Systemctl = service.NoSystemctl
	}
	return opts
}
