package routing

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ServiceConfig lists the static endpoints of one service (an entry of
// `services:` in the configuration).
type ServiceConfig struct {
	// Name is the fully qualified gRPC service name, e.g.
	// "quaestor.example.v1.Echo". Required.
	Name string `koanf:"name"`
	// Endpoints are the host:port addresses of the service's instances.
	// They are merged with what registries hold. May be empty.
	Endpoints []string `koanf:"endpoints"`
	// Policy overrides proxy.policy for this service. Default: empty, the
	// proxy's policy.
	Policy string `koanf:"policy"`
	// HashKey is the request metadata key the consistent-hash policy
	// hashes, e.g. "x-session-id". Required with that policy.
	HashKey string `koanf:"hash_key"`
	// TLS makes the proxy call this service's instances over TLS: ca
	// verifies them (empty: the system roots), server_name overrides the
	// name checked, cert and key are the proxy's client certificate for
	// backends that require one. Default: plaintext.
	TLS TLSConfig `koanf:"tls"`
}

// ValidateServices checks the `services:` list; errors name the entry and
// key, e.g. `services[1].endpoints[0]: "localhost" is not host:port`.
func ValidateServices(services []ServiceConfig) error {
	seen := make(map[string]int)
	for i, svc := range services {
		key := fmt.Sprintf("services[%d]", i)
		if err := ValidateServiceName(svc.Name); err != nil {
			return fmt.Errorf("%s.name: %w", key, err)
		}
		if j, dup := seen[svc.Name]; dup {
			return fmt.Errorf("%s.name: %q is already listed as services[%d]", key, svc.Name, j)
		}
		seen[svc.Name] = i
		for j, addr := range svc.Endpoints {
			if err := ValidateAddr(addr); err != nil {
				return fmt.Errorf("%s.endpoints[%d]: %w", key, j, err)
			}
		}
		if svc.Policy != "" {
			if err := ValidatePolicy(svc.Policy); err != nil {
				return fmt.Errorf("%s.policy: %w", key, err)
			}
		}
		if err := svc.TLS.Validate(key + ".tls"); err != nil {
			return err
		}
		if svc.Policy == PolicyConsistentHash && svc.HashKey == "" {
			return fmt.Errorf("%s.hash_key: empty, the consistent-hash policy needs the metadata key to hash", key)
		}
	}
	return nil
}

// ValidateServiceName checks that name can be the service part of a gRPC
// method path ("/name/Method").
func ValidateServiceName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("service name is empty")
	case strings.ContainsAny(name, "/ \t\r\n"):
		return fmt.Errorf("service name %q contains '/' or white space", name)
	}
	return nil
}

// ValidateAddr checks that addr is host:port with a port in 1..65535.
func ValidateAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has port %q, want a number from 1 to 65535", addr, port)
	}
	return nil
}

// LoadStatic puts the endpoints of services into table under SourceStatic,
// replacing what was there, and forgets static services no longer listed.
func LoadStatic(table *Table, services []ServiceConfig) error {
	if err := ValidateServices(services); err != nil {
		return err
	}
	listed := make(map[string]bool)
	for _, svc := range services {
		listed[svc.Name] = true
		eps := make([]Endpoint, 0, len(svc.Endpoints))
		for i, addr := range svc.Endpoints {
			// The order listed is the failover policy's priority.
			eps = append(eps, Endpoint{Addr: addr, Metadata: map[string]string{"priority": strconv.Itoa(i)}})
		}
		table.Update(svc.Name, SourceStatic, eps)
	}
	for _, name := range table.Services() {
		if !listed[name] {
			table.Remove(name, SourceStatic)
		}
	}
	return nil
}
