// Package loadreport will be the library Go backends import to report their
// load to quaestor: in-flight counting interceptors, capacity and
// utilisation, the Quaestor.LoadReporting service and ORCA. It has no code
// yet; load-ranked routing is built on top of the health checks.
package loadreport
