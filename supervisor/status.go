package supervisor

import "time"

// States of an instance.
const (
	// StateStarting: the process is started and not yet healthy (or,
	// for an agent without service names, being started).
	StateStarting = "starting"
	// StateRunning: the process runs and, if it has service names, every
	// one is SERVING; it is registered.
	StateRunning = "running"
	// StateUnhealthy: the last check failed; the instance is
	// deregistered and is restarted after heartbeat.failures failures in
	// a row.
	StateUnhealthy = "unhealthy"
	// StateBackoff: the process exited or was stopped for failing its
	// checks, and waits to be started again.
	StateBackoff = "backoff"
	// StateStopping: the process is being stopped (a stop, a reload, a
	// restart, a recycle).
	StateStopping = "stopping"
	// StateStopped: the instance was stopped and is not restarted.
	StateStopped = "stopped"
	// StateFatal: the instance crash-looped; it is started again after
	// restart.fatal_retry.
	StateFatal = "fatal"
)

// InstanceStatus is a snapshot of one instance.
type InstanceStatus struct {
	// Agent and Instance (from 0) identify the instance.
	Agent    string
	Instance int
	// State is one of the State constants.
	State string
	// PID of the running process; 0 when there is none.
	PID int
	// Port is the instance's port; Addr is HostName:Port, the address
	// registered.
	Port int
	Addr string
	// Health is the result of the last check: SERVING, NOT_SERVING,
	// SERVICE_UNKNOWN, UNKNOWN (grpc.health.v1's), UNREACHABLE (the call
	// failed), or empty before the first check and for agents without
	// service names.
	Health string
	// Restarts counts the starts after the first.
	Restarts int
	// StartedAt is when the current (or last) process started.
	StartedAt time.Time
	// LastExit says how the last process ended ("exit status 1",
	// "signal: killed"), or why it could not start; LastExitAt is when.
	LastExit   string
	LastExitAt time.Time
	// Registered reports whether every service name is registered.
	Registered bool
	// LastLines are the last lines of the current (or last) process's
	// output.
	LastLines []string
	// LogFile is the file that receives the output.
	LogFile string
}
