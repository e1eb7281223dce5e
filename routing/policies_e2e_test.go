package routing_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/routing"
)

// startDelayedEcho serves Echo answering after delay.
func startDelayedEcho(t *testing.T, name string, delay time.Duration) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	examplev1.RegisterEchoServer(srv, echo.New(echo.Options{Name: name, Delay: delay}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestPoliciesEndToEnd runs each policy on a real connection to three real
// backends and checks its defining behaviour.
func TestPoliciesEndToEnd(t *testing.T) {
	tests := []struct {
		policy  string
		hashKey string
		// delays and weights of backends a, b, c.
		delays  [3]time.Duration
		weights [3]string
		// concurrent callers, calls per caller, and metadata per call.
		callers, calls int
		md             func(caller, call int) metadata.MD
		check          func(t *testing.T, counts map[string]int, byKey map[string]map[string]bool)
	}{
		{policy: routing.PolicyRoundRobin, callers: 1, calls: 300,
			check: func(t *testing.T, counts map[string]int, _ map[string]map[string]bool) {
				for _, n := range []string{"a", "b", "c"} {
					if counts[n] != 100 {
						t.Errorf("round robin: %v, want 100 each", counts)
					}
				}
			}},
		{policy: routing.PolicyWeightedRoundRobin, weights: [3]string{"1", "2", "3"}, callers: 1, calls: 600,
			check: func(t *testing.T, counts map[string]int, _ map[string]map[string]bool) {
				if abs(counts["a"]-100) > 10 || abs(counts["b"]-200) > 10 || abs(counts["c"]-300) > 10 {
					t.Errorf("weights 1:2:3: %v, want about 100:200:300", counts)
				}
			}},
		{policy: routing.PolicyLeastRequest, delays: [3]time.Duration{0, 0, 30 * time.Millisecond}, callers: 8, calls: 40,
			check: func(t *testing.T, counts map[string]int, _ map[string]map[string]bool) {
				// c holds its calls longest, so it has the most in flight
				// and loses most comparisons.
				if counts["c"] >= counts["a"] || counts["c"] >= counts["b"] {
					t.Errorf("least request: %v, want c (slow) to get the fewest", counts)
				}
			}},
		{policy: routing.PolicyPeakEWMA, delays: [3]time.Duration{0, 0, 30 * time.Millisecond}, callers: 4, calls: 40,
			check: func(t *testing.T, counts map[string]int, _ map[string]map[string]bool) {
				if counts["c"]*4 > counts["a"]+counts["b"] {
					t.Errorf("peak EWMA: %v, want c (slow) to get few", counts)
				}
			}},
		{policy: routing.PolicyConsistentHash, hashKey: "x-session-id", callers: 1, calls: 300,
			md: func(_, call int) metadata.MD { return metadata.Pairs("x-session-id", fmt.Sprintf("s%d", call%30)) },
			check: func(t *testing.T, counts map[string]int, byKey map[string]map[string]bool) {
				for key, servers := range byKey {
					if len(servers) != 1 {
						t.Errorf("session %s went to %v, want one backend", key, servers)
					}
				}
				if len(counts) < 2 {
					t.Errorf("30 sessions all on %v", counts)
				}
			}},
		{policy: routing.PolicyFailover, callers: 1, calls: 50,
			check: func(t *testing.T, counts map[string]int, _ map[string]map[string]bool) {
				if counts["a"] != 50 {
					t.Errorf("failover: %v, want all on a (listed first)", counts)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			var services []routing.ServiceConfig
			svc := routing.ServiceConfig{Name: echoService, Policy: tt.policy, HashKey: tt.hashKey}
			names := []string{"a", "b", "c"}
			for i, n := range names {
				svc.Endpoints = append(svc.Endpoints, startDelayedEcho(t, n, tt.delays[i]))
			}
			services = append(services, svc)
			table := routing.NewTable()
			if err := routing.LoadStatic(table, services); err != nil {
				t.Fatal(err)
			}
			if tt.weights[0] != "" {
				eps, _ := table.Endpoints(echoService)
				for i := range eps {
					eps[i].Metadata = map[string]string{"weight": tt.weights[indexOf(svc.Endpoints, eps[i].Addr)]}
				}
				table.Update(echoService, routing.SourceStatic, eps)
			}
			r := newRouter(t, table, routing.Options{
				ServicePolicies: map[string]string{echoService: tt.policy},
				HashKeys:        map[string]string{echoService: tt.hashKey},
				Logger:          quietLogger,
			})
			cc, err := r.Conn(echoService)
			if err != nil {
				t.Fatal(err)
			}
			client := examplev1.NewEchoClient(cc)
			ctx := testContext(t)
			// Connect to all three before counting.
			if err := warmUp(ctx, client, tt.policy, tt.hashKey); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			counts := map[string]int{}
			byKey := map[string]map[string]bool{}
			var wg sync.WaitGroup
			for caller := range tt.callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for call := range tt.calls {
						callCtx := ctx
						var md metadata.MD
						if tt.md != nil {
							md = tt.md(caller, call)
							callCtx = metadata.NewOutgoingContext(ctx, md)
						}
						resp, err := client.Unary(callCtx, &examplev1.EchoRequest{})
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						counts[resp.GetServer()]++
						if key := strings.Join(md.Get(tt.hashKey), ""); key != "" {
							if byKey[key] == nil {
								byKey[key] = map[string]bool{}
							}
							byKey[key][resp.GetServer()] = true
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			tt.check(t, counts, byKey)
		})
	}
}

// warmUp calls until the balancer has connected to the backends the
// policy would use: all three, or, for failover, the first.
func warmUp(ctx context.Context, client examplev1.EchoClient, policy, hashKey string) error {
	seen := map[string]bool{}
	for i := 0; ; i++ {
		callCtx := ctx
		if hashKey != "" {
			callCtx = metadata.AppendToOutgoingContext(ctx, hashKey, fmt.Sprintf("warm-%d", i))
		}
		resp, err := client.Unary(callCtx, &examplev1.EchoRequest{}, grpc.WaitForReady(true))
		if err != nil {
			return err
		}
		seen[resp.GetServer()] = true
		if policy == routing.PolicyFailover && seen["a"] || len(seen) == 3 {
			return nil
		}
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
