package supervisor_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/quaestor-go/quaestor/routing/registry"
	"github.com/quaestor-go/quaestor/supervisor"
)

// Supervising four workers that register in etcd: started, reloaded on
// SIGHUP, stopped on SIGINT or SIGTERM.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.Default()

	etcdCfg := registry.DefaultEtcdConfig()
	etcdCfg.Mode, etcdCfg.Endpoints = registry.ModeExternal, []string{"http://127.0.0.1:2379"}
	client, err := registry.NewClient(etcdCfg)
	if err != nil {
		log.Error("etcd", "error", err)
		return
	}
	defer client.Close()
	registrar, err := registry.NewRegistrar(registry.RegistrarOptions{Client: client})
	if err != nil {
		log.Error("registrar", "error", err)
		return
	}
	defer registrar.Close()

	cfg := supervisor.DefaultConfig()
	cfg.Agents = []supervisor.AgentConfig{{
		Name:         "worker",
		Executable:   "./bin/quaestor-worker",
		Args:         []string{"--port", "{Port}"},
		Instances:    4,
		Ports:        []int{5161, 5162, 5163, 5164},
		ServiceNames: []string{"quaestor.example.v1.Echo"},
	}}
	sup, err := supervisor.New(supervisor.Options{Config: cfg, Registry: registrar, Logger: log})
	if err != nil {
		log.Error("supervisor config", "error", err)
		return
	}
	if err := sup.Start(ctx); err != nil {
		log.Error("supervisor", "error", err) // e.g. a port already in use
		return
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for running := true; running; {
		select {
		case <-hup:
			// Reload the file; here, one more instance.
			cfg.Agents[0].Instances, cfg.Agents[0].Ports = 5, append(cfg.Agents[0].Ports, 5165)
			if err := sup.Reload(cfg); err != nil {
				log.Error("reload", "error", err)
			}
		case <-ctx.Done():
			running = false
		}
	}
	for _, st := range sup.Status() {
		fmt.Printf("%s-%d %s pid %d %s %s\n", st.Agent, st.Instance, st.State, st.PID, st.Addr, st.Health)
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sup.Stop(stopCtx); err != nil {
		log.Error("stopping", "error", err)
	}
}

// Validate names the key at fault.
func ExampleConfig_CheckFiles() {
	cfg := supervisor.DefaultConfig()
	cfg.Agents = []supervisor.AgentConfig{{Name: "worker", Executable: "./bin/no-such-worker"}}
	fmt.Println(cfg.Validate())
	fmt.Println(cfg.CheckFiles())
	// Output:
	// <nil>
	// supervisor.agents[0].executable: "./bin/no-such-worker" not found
}
