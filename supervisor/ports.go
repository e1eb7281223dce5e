package supervisor

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// loopback is where instances are health-checked, and where a port must
// be free before an instance is started on it.
const loopback = "127.0.0.1"

// portInUseError says another process listens on a port an instance is
// configured with. The supervisor never adopts such a process: it is not
// its own, so it could not stop or restart it.
type portInUseError struct{ addr string }

func (e *portInUseError) Error() string {
	return fmt.Sprintf("%s is already in use (another process is listening; stop it or change the port)", e.addr)
}

// checkPortFree returns a *portInUseError when another socket listens on
// port, on loopback or on any of hosts. It does so by listening there for
// a moment. A host it cannot listen on for another reason (a name of
// another machine, an address behind NAT) says nothing about the port and
// is skipped.
func checkPortFree(port int, hosts ...string) error {
	seen := map[string]bool{}
	for _, host := range append([]string{loopback}, hosts...) {
		if seen[host] {
			continue
		}
		seen[host] = true
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		lis, err := net.Listen("tcp", addr)
		if err == nil {
			lis.Close()
			continue
		}
		if isAddrInUse(err) {
			return &portInUseError{addr: addr}
		}
	}
	return nil
}

// chooseFreePort returns a port no socket listens on, on any interface,
// and that is not in avoid (ports configured or chosen for other
// instances, which may be between two runs).
func chooseFreePort(avoid map[int]bool) (int, error) {
	const attempts = 20
	for range attempts {
		lis, err := net.Listen("tcp", ":0")
		if err != nil {
			return 0, fmt.Errorf("choosing a free port: %w", err)
		}
		port := lis.Addr().(*net.TCPAddr).Port
		lis.Close()
		if !avoid[port] {
			return port, nil
		}
	}
	return 0, errors.New("choosing a free port: every port offered is taken by another instance")
}

// checkAgentPorts checks that the configured ports of agent, the i-th of
// cfg, are free, except those in ours (held by instances of ours about to
// stop). The error names the key.
func checkAgentPorts(cfg *Config, i int, agent AgentConfig, ours map[int]bool) error {
	for j, port := range agent.Ports {
		if ours[port] {
			continue
		}
		if err := checkPortFree(port, cfg.HostName); err != nil {
			return fmt.Errorf("supervisor.agents[%d].ports[%d]: %w", i, j, err)
		}
	}
	return nil
}

// configuredPorts returns the ports agents configure.
func configuredPorts(agents []AgentConfig) map[int]bool {
	ports := map[int]bool{}
	for _, agent := range agents {
		for _, port := range agent.Ports {
			ports[port] = true
		}
	}
	return ports
}
