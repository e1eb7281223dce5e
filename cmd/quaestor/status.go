package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/admin"
)

func newStatusCommand(flags *globalFlags, stdout io.Writer) *cobra.Command {
	var addr string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--addr HOST:PORT] [--json]",
		Short: "Show the services, endpoints and supervised processes of a running quaestor",
		Long: `Ask a running quaestor (its admin server, admin.listen) for its state and print
the routed services with the health and load of each endpoint, and the
supervised processes with state, pid, port, health, restarts, uptime and
last exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				cfg, err := flags.loadConfig(os.Environ())
				if err != nil {
					return err
				}
				addr = cfg.Admin.Listen
			}
			snap, raw, err := fetchStatus(cmd.Context(), addr)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := stdout.Write(raw)
				return err
			}
			printStatus(stdout, snap, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "the admin server to ask (default admin.listen)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the raw JSON of /api/status")
	return cmd
}

func fetchStatus(ctx context.Context, addr string) (admin.Snapshot, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := "http://" + addr + "/api/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return admin.Snapshot{}, nil, usageError{fmt.Errorf("--addr %q: %w", addr, err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return admin.Snapshot{}, nil, fmt.Errorf("asking %s (is quaestor running, with admin.listen %s?): %w", url, addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return admin.Snapshot{}, nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return admin.Snapshot{}, nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	var snap admin.Snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return admin.Snapshot{}, nil, fmt.Errorf("%s: %w", url, err)
	}
	return snap, raw, nil
}

func printStatus(w io.Writer, snap admin.Snapshot, now time.Time) {
	fmt.Fprintf(w, "quaestor %s, up %s\n", snap.Version, now.Sub(snap.StartedAt).Round(time.Second))
	if e := snap.Etcd; e != nil {
		state := "ready"
		if !e.Ready {
			state = "NOT READY (routing on the last known endpoints)"
		}
		fmt.Fprintf(w, "etcd: %s, %s, revision %d, watch restarts %d", e.Mode, state, e.Revision, e.Restarts)
		if e.LastError != "" {
			fmt.Fprintf(w, ", last error: %s", e.LastError)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "etcd: none (static endpoints only)")
	}

	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPOLICY\tENDPOINT\tSOURCE\tHEALTH\tIN FLIGHT\tLOAD\tPICKS")
	for _, svc := range snap.Services {
		if len(svc.Endpoints) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\n", svc.Name, svc.Policy)
		}
		for _, ep := range svc.Endpoints {
			health := "healthy"
			switch {
			case ep.Ejected:
				health = "ejected"
			case !ep.Healthy:
				health = "unhealthy"
			}
			load := "-"
			if ep.LoadRate >= 0 {
				load = fmt.Sprintf("%.2f", ep.LoadRate)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", svc.Name, svc.Policy, ep.Addr, ep.Source, health, ep.InFlight, load, ep.Picks)
		}
	}
	tw.Flush()

	if len(snap.Processes) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\t#\tSTATE\tPID\tPORT\tHEALTH\tRESTARTS\tUPTIME\tLAST EXIT")
	for _, p := range snap.Processes {
		uptime := "-"
		if p.State == "running" && !p.StartedAt.IsZero() {
			uptime = now.Sub(p.StartedAt).Round(time.Second).String()
		}
		lastExit := "-"
		if p.LastExit != "" {
			lastExit = fmt.Sprintf("%s (%s ago)", p.LastExit, now.Sub(p.LastExitAt).Round(time.Second))
		}
		pid := "-"
		if p.PID > 0 {
			pid = fmt.Sprint(p.PID)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", p.Agent, p.Instance, p.State, pid, p.Port, p.Health, p.Restarts, uptime, lastExit)
	}
	tw.Flush()
}
