//go:build windows

package service

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

const (
	// installedByValue, a value in the service's registry key, marks the
	// services Install created; Uninstall refuses others unless forced, so
	// a mistyped name cannot delete another service.
	installedByValue = "InstalledBy"
	installedBy      = "quaestor service install"
	// stopWait bounds how long Install (on a forced replacement) and
	// Uninstall wait for the service to stop: its drain and a margin.
	stopWait = DefaultStopTimeout + 10*time.Second
	// recoveryResetPeriod is when the service control manager forgets
	// earlier failures and starts the recovery actions over, in seconds.
	recoveryResetPeriod = 24 * 60 * 60
)

// Install creates spec's Windows service through the service control
// manager: automatic start, Args as the service's command-line arguments,
// and recovery actions that restart it 5s after any failure (including a
// non-zero exit, see RunAsService). Then it starts the service. It returns
// what it did, one step a line. UnitDir, Systemctl, Stdout and Stderr do
// not apply here.
//
// A service of the same name and configuration is left in place ("already
// installed") and started if it is not running. A different one is an
// error unless opts.Force, which updates its configuration and restarts it.
func Install(spec Spec, opts InstallOptions) (string, error) {
	spec, err := spec.resolve()
	if err != nil {
		return "", fmt.Errorf("service: installing %s: %w", spec.Name, err)
	}
	if spec.User != "" {
		return "", fmt.Errorf("service: installing %s: user %q: choosing the account is supported only with systemd; set it in the service's properties after installing", spec.Name, spec.User)
	}
	m, err := connect()
	if err != nil {
		return "", fmt.Errorf("service: installing %s: %w", spec.Name, err)
	}
	defer m.Disconnect()

	want := mgr.Config{
		StartType:   mgr.StartAutomatic,
		DisplayName: spec.DisplayName,
		Description: spec.Description,
	}
	// The command line CreateService builds from the executable and args.
	commandLine := syscall.EscapeArg(spec.Executable)
	for _, arg := range spec.Args {
		commandLine += " " + syscall.EscapeArg(arg)
	}

	var done []string
	restart := false
	s, err := m.OpenService(spec.Name)
	switch {
	case err == nil:
		defer s.Close()
		have, err := s.Config()
		if err != nil {
			return "", fmt.Errorf("service: installing %s: reading the existing service's configuration: %w", spec.Name, err)
		}
		switch {
		case have.BinaryPathName == commandLine && have.StartType == want.StartType &&
			have.DisplayName == want.DisplayName && have.Description == want.Description:
			done = append(done, "service "+spec.Name+" already installed")
		case !opts.Force:
			return "", fmt.Errorf("service: installing %s: a service of that name exists and runs %s; uninstall it first, or force the overwrite", spec.Name, have.BinaryPathName)
		default:
			have.BinaryPathName = commandLine
			have.StartType = want.StartType
			have.DisplayName = want.DisplayName
			have.Description = want.Description
			have.DelayedAutoStart = false
			have.ServiceStartName = "" // unchanged
			if err := s.UpdateConfig(have); err != nil {
				return "", fmt.Errorf("service: installing %s: updating the existing service: %w", spec.Name, err)
			}
			done = append(done, "updated service "+spec.Name+" to run "+commandLine)
			restart = true
		}
	case errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST):
		s, err = m.CreateService(spec.Name, spec.Executable, want, spec.Args...)
		if err != nil {
			return "", fmt.Errorf("service: installing %s: creating the service: %w", spec.Name, err)
		}
		defer s.Close()
		done = append(done, "created service "+spec.Name+" to run "+commandLine)
	default:
		return "", fmt.Errorf("service: installing %s: opening the service: %w", spec.Name, err)
	}

	fail := func(what string, err error) (string, error) {
		return "", fmt.Errorf("service: installing %s (%s): %s: %w", spec.Name, strings.Join(done, "; "), what, err)
	}
	if err := markInstalled(spec.Name); err != nil {
		return fail("marking the service as quaestor's", err)
	}
	restartAfter := mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: restartDelay}
	if err := s.SetRecoveryActions([]mgr.RecoveryAction{restartAfter, restartAfter, restartAfter}, recoveryResetPeriod); err != nil {
		return fail("setting the recovery actions", err)
	}
	// Without this flag, recovery applies only to crashes, not to a
	// service that stops itself with an error.
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fail("setting the recovery actions", err)
	}
	if restart {
		if err := stopService(s); err != nil {
			return fail("restarting", err)
		}
	}
	if err := s.Start(); err != nil && !errors.Is(err, windows.ERROR_SERVICE_ALREADY_RUNNING) {
		return fail("starting the service", err)
	}
	done = append(done, "started service "+spec.Name)
	if spec.WorkingDir != "" {
		done = append(done, `note: working directory `+spec.WorkingDir+` not applied: Windows services start in %SystemRoot%\System32, so paths in the arguments must be absolute`)
	}
	return strings.Join(done, "\n"), nil
}

// Uninstall stops the Windows service name and deletes it. An empty name
// means DefaultName. A missing service is an error, and so is one Install
// did not create, unless opts.Force.
func Uninstall(name string, opts InstallOptions) (string, error) {
	if name == "" {
		name = DefaultName
	}
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("service: uninstalling: %w", err)
	}
	m, err := connect()
	if err != nil {
		return "", fmt.Errorf("service: uninstalling %s: %w", name, err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return "", fmt.Errorf("service: uninstalling %s: no such service; is it installed under another name?", name)
	}
	if err != nil {
		return "", fmt.Errorf("service: uninstalling %s: opening the service: %w", name, err)
	}
	defer s.Close()
	if !opts.Force && !installedByUs(name) {
		return "", fmt.Errorf("service: uninstalling %s: the service was not created by `quaestor service install`; remove it with `sc.exe delete %s`, or force the removal", name, name)
	}
	if err := stopService(s); err != nil {
		return "", fmt.Errorf("service: uninstalling %s: %w", name, err)
	}
	if err := s.Delete(); err != nil {
		return "", fmt.Errorf("service: uninstalling %s (stopped): deleting the service: %w", name, err)
	}
	return "stopped and deleted service " + name, nil
}

func connect() (*mgr.Mgr, error) {
	m, err := mgr.Connect()
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		return nil, fmt.Errorf("connecting to the service control manager: %w (run as Administrator)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to the service control manager: %w", err)
	}
	return m, nil
}

// stopService asks s to stop and polls until it has, for at most stopWait.
func stopService(s *mgr.Service) error {
	status, err := s.Control(svc.Stop)
	if errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stopping the service: %w", err)
	}
	deadline := time.Now().Add(stopWait)
	for status.State != svc.Stopped {
		if time.Now().After(deadline) {
			return fmt.Errorf("stopping the service: not stopped after %v", stopWait)
		}
		time.Sleep(250 * time.Millisecond)
		if status, err = s.Query(); err != nil {
			return fmt.Errorf("stopping the service: querying its state: %w", err)
		}
	}
	return nil
}

func serviceKey(name string, access uint32) (registry.Key, error) {
	return registry.OpenKey(registry.LOCAL_MACHINE, `SYSTEM\CurrentControlSet\Services\`+name, access)
}

func markInstalled(name string) error {
	k, err := serviceKey(name, registry.SET_VALUE)
	if err != nil {
		return err
	}
	defer k.Close()
	return k.SetStringValue(installedByValue, installedBy)
}

func installedByUs(name string) bool {
	k, err := serviceKey(name, registry.QUERY_VALUE)
	if err != nil {
		return false
	}
	defer k.Close()
	v, _, err := k.GetStringValue(installedByValue)
	return err == nil && v == installedBy
}
