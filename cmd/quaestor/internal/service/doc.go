// Package service installs quaestor as an operating-system service and runs
// it under the Windows service control manager.
//
// On Linux, Install writes a systemd unit ({UnitDir}/{Name}.service, see
// Unit) and enables it with systemctl; Uninstall disables and removes it. On
// Windows, Install and Uninstall create and delete a service through the
// service control manager, and RunAsService lets `quaestor run` answer the
// manager's start and stop requests. On other systems Install and Uninstall
// return an error wrapping errors.ErrUnsupported: run `quaestor run` under
// the system's own service manager.
//
// In `quaestor service install`:
//
//	config, err := filepath.Abs(configFlag)
//	msg, err := service.Install(service.Spec{
//		Args:       []string{"run", "-c", config},
//		WorkingDir: wd,
//	}, service.InstallOptions{Force: forceFlag})
//	fmt.Fprintln(stdout, msg)
//
// At the start of `quaestor run`, before anything else:
//
//	handled, err := service.RunAsService(name, runStack)
//	if handled {
//		return err // the Windows service has stopped
//	}
//	// not a Windows service: run in the foreground as usual
package service
