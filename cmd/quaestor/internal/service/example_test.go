package service_test

import (
	"fmt"

	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/service"
)

func ExampleUnit() {
	fmt.Print(service.Unit(service.Spec{
		Executable: "/usr/local/bin/quaestor",
		Args:       []string{"run", "-c", "/etc/quaestor/quaestor.yaml"},
		WorkingDir: "/var/lib/quaestor",
		User:       "quaestor",
	}))
	// Output:
	// # Installed by `quaestor service install`; remove it with `quaestor service uninstall`.
	//
	// [Unit]
	// Description=quaestor gRPC gateway
	// Wants=network-online.target
	// After=network-online.target
	//
	// [Service]
	// Type=simple
	// ExecStart=/usr/local/bin/quaestor run -c /etc/quaestor/quaestor.yaml
	// WorkingDirectory=/var/lib/quaestor
	// User=quaestor
	// Restart=on-failure
	// RestartSec=5
	// # SIGTERM to quaestor only: it drains and stops its own children;
	// # whatever is left when it exits or TimeoutStopSec ends is killed.
	// KillMode=mixed
	// KillSignal=SIGTERM
	// TimeoutStopSec=60
	// LimitNOFILE=65536
	//
	// [Install]
	// WantedBy=multi-user.target
}
