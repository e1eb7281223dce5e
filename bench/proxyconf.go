package main

import (
	"fmt"
	"strings"
)

// The configuration files the harness writes for the proxies it runs as
// processes. They are pure functions of their settings so that tests can
// check them without starting anything.

// haproxyConfig returns an haproxy.cfg (HAProxy 2.6) that serves gRPC
// (HTTP/2 without TLS, "proto h2") on listen and forwards every stream to
// the backends, also over HTTP/2, with threads worker threads.
//
// Choices, each the setting a gRPC deployment of HAProxy would make:
//   - nbthread = the machine's cores, HAProxy's default and, on 2 cores,
//     faster than 1 thread (unary-16, streams, ping-pong; unary-256 the
//     same);
//   - "http-reuse always": backend HTTP/2 connections are shared by all
//     client connections, so streams are multiplexed over a few backend
//     connections instead of one per client connection;
//   - tune.h2.initial-window-size 1 MiB (default 64 KiB) so that the 1 MiB
//     stream scenario is not throttled by flow control (grpc-go sizes its
//     windows by BDP estimation and reaches several MiB);
//   - long client/server timeouts, as streams may run for seconds;
//   - no logging: the harness measures forwarding, not log writing.
func haproxyConfig(listen string, backends []string, threads int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by quaestor's bench harness for one run; removed afterwards.
global
    nbthread %d
    maxconn 8000
    tune.h2.initial-window-size 1048576
    tune.h2.max-concurrent-streams 1000

defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-request 120s

frontend grpc_in
    bind %s proto h2
    default_backend grpc_backends

backend grpc_backends
    balance roundrobin
    http-reuse always
`, max(threads, 1), listen)
	for i, addr := range backends {
		fmt.Fprintf(&b, "    server b%d %s proto h2\n", i+1, addr)
	}
	return b.String()
}

// nginxConfig returns an nginx.conf (nginx 1.22) that serves gRPC (HTTP/2
// without TLS, "listen ... http2") on listen and forwards every call with
// grpc_pass to the backends; dir is the nginx prefix, where its pid file,
// error log and temporary files go.
//
// Choices:
//   - worker_processes = the machine's cores;
//   - upstream keepalive 1024 connections per worker with keepalive_requests
//     and keepalive_timeout raised: nginx's gRPC proxy runs one stream per
//     backend connection, so without a keepalive pool every call would open
//     a new backend connection;
//   - keepalive_requests raised on the client side too: nginx's default of
//     1,000 calls per client HTTP/2 connection would send GOAWAY every
//     1,000 calls;
//   - http2_max_concurrent_streams 1024 (default 128) so that 256 callers
//     over 4 connections and the open loop's bursts are not queued by nginx;
//   - access_log off, as for HAProxy.
func nginxConfig(listen string, backends []string, workers int, dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by quaestor's bench harness for one run; removed afterwards.
daemon off;
master_process on;
worker_processes %d;
pid %s/nginx.pid;
error_log %s/error.log warn;

events {
    worker_connections 16384;
}

http {
    access_log off;
    client_body_temp_path %s/client_body;
    proxy_temp_path %s/proxy;
    fastcgi_temp_path %s/fastcgi;
    uwsgi_temp_path %s/uwsgi;
    scgi_temp_path %s/scgi;

    upstream grpc_backends {
`, max(workers, 1), dir, dir, dir, dir, dir, dir, dir)
	for _, addr := range backends {
		fmt.Fprintf(&b, "        server %s;\n", addr)
	}
	fmt.Fprintf(&b, `        keepalive 1024;
        keepalive_requests 1000000;
        keepalive_timeout 120s;
    }

    server {
        listen %s http2;
        http2_max_concurrent_streams 1024;
        keepalive_requests 1000000;
        keepalive_timeout 120s;
        client_max_body_size 0;

        location / {
            grpc_pass grpc://grpc_backends;
            grpc_read_timeout 120s;
            grpc_send_timeout 120s;
        }
    }
}
`, listen)
	return b.String()
}

// quaestorConfig returns a quaestor configuration file for `quaestor
// proxy`: serving on listen, logs at warn, the admin server off, or with
// adminListen set on that address with the Go profiler (for profiling the
// proxy under the harness's load).
// With etcdEndpoint empty it routes the echo service to the static
// backends (etcd.mode none); otherwise it reads the registrations under
// etcdPrefix from that etcd (etcd.mode external). Everything else keeps
// quaestor's defaults (least-loaded policy, health checks, load reports),
// as a deployment would run it.
func quaestorConfig(listen, adminListen string, backends []string, etcdEndpoint, etcdPrefix string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by quaestor's bench harness for one run; removed afterwards.
proxy:
  listen: %s
  max_message_size: %d
  drain_timeout: 1s
log:
  level: warn
`, listen, maxMessageSize)
	if adminListen == "" {
		b.WriteString("admin:\n  listen: \"\"\n")
	} else {
		fmt.Fprintf(&b, "admin:\n  listen: %s\n  pprof: true\n", adminListen)
	}
	if etcdEndpoint == "" {
		b.WriteString("etcd:\n  mode: none\n")
	} else {
		fmt.Fprintf(&b, "etcd:\n  mode: external\n  endpoints: [%q]\n  prefix: %q\n", etcdEndpoint, etcdPrefix)
	}
	if len(backends) > 0 {
		fmt.Fprintf(&b, "services:\n  - name: %s\n    endpoints: [%s]\n", echoService, strings.Join(quoteAll(backends), ", "))
	}
	return b.String()
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
