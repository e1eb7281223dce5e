package registry_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/quaestor-go/quaestor/routing"
	"github.com/quaestor-go/quaestor/routing/registry"
)

// freeURLs returns two loopback URLs that were free a moment ago: both
// listeners stay open until both are chosen, so the two differ.
func freeURLs() (client, peer string) {
	a, _ := net.Listen("tcp", "127.0.0.1:0")
	defer a.Close()
	b, _ := net.Listen("tcp", "127.0.0.1:0")
	defer b.Close()
	return "http://" + a.Addr().String(), "http://" + b.Addr().String()
}

// An embedded etcd, a process registering an instance, and a discovery
// following the registrations into a routing table.
func Example() {
	dir, _ := os.MkdirTemp("", "quaestor-example")
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)
	clientURL, peerURL := freeURLs()
	etcd, err := registry.StartEmbedded(registry.EmbeddedOptions{
		Dir: filepath.Join(dir, "etcd"), ClientURL: clientURL, PeerURL: peerURL, Logger: quiet,
	})
	if err != nil {
		panic(err)
	}
	defer etcd.Close()
	cfg := registry.DefaultEtcdConfig()
	cfg.Mode, cfg.Endpoints = registry.ModeExternal, []string{etcd.ClientURL()}
	client, err := registry.NewClient(cfg)
	if err != nil {
		panic(err)
	}
	defer client.Close()

	table := routing.NewTable()
	disc, _ := registry.StartDiscovery(registry.DiscoveryOptions{Client: client, Table: table, Logger: quiet})
	defer disc.Close()

	reg, _ := registry.NewRegistrar(registry.RegistrarOptions{Client: client, Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Register(ctx, registry.Instance{Service: "pkg.Svc", Addr: "127.0.0.1:7001"}); err != nil {
		panic(err)
	}
	for !table.Has("pkg.Svc") {
		time.Sleep(5 * time.Millisecond)
	}
	eps, _ := table.Endpoints("pkg.Svc")
	fmt.Println(eps[0].Addr, eps[0].Source)

	_ = reg.Close() // revokes the lease: gone at once
	for table.Has("pkg.Svc") {
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Println("deregistered")
	// Output:
	// 127.0.0.1:7001 etcd
	// deregistered
}
