//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/quaestor-go/quaestor/routing/registry"
)

// Churn actions, taken in turn, one every churnOptions.every.
const (
	actionAdd     = "add"     // start a backend (restarting a killed one first)
	actionKill    = "kill"    // SIGKILL: its registration stays until the lease expires
	actionFlap    = "flap"    // NOT_SERVING for a while, then SERVING again
	actionDelete  = "delete"  // delete its key in etcd; stop the process a little later
	actionStop    = "stop"    // SIGTERM: it revokes its lease, then stops gracefully
	actionSkipped = "skipped" // an action the bounds did not allow
)

// The actions come in rounds of eight: growRounds growing rounds (4 adds,
// 3 removals) then shrinkRounds shrinking ones (2 adds, 5 removals), so
// that the pool swings between its bounds instead of idling around its
// start, and the proxy sees endpoints come and go by the dozen.
var (
	growRound   = []string{actionAdd, actionKill, actionStop, actionFlap, actionAdd, actionDelete, actionAdd, actionAdd}
	shrinkRound = []string{actionKill, actionAdd, actionStop, actionFlap, actionDelete, actionKill, actionAdd, actionStop}
)

const growRounds, shrinkRounds = 5, 2

// churnAction is the i-th action (from 0).
func churnAction(i int) string {
	round, step := i/len(growRound), i%len(growRound)
	if round%(growRounds+shrinkRounds) < growRounds {
		return growRound[step]
	}
	return shrinkRound[step]
}

// churnOptions bound the backend pool.
type churnOptions struct {
	exe      string // the soak binary, re-executed as a backend
	etcdURL  string
	leaseTTL time.Duration
	logDir   string
	every    time.Duration
	// minServing is the fewest backends the churn leaves serving and
	// registered; maxLive the most processes running.
	minServing, maxLive int
	// flapFor is how long a flapped backend stays NOT_SERVING; retireAfter
	// how long a deleted backend runs on before it is stopped.
	flapFor, retireAfter time.Duration
	rand                 *rand.Rand
	events               *eventLog
}

// backend is one backend process and what the churn did to it.
type backend struct {
	id   string
	port int
	addr string
	proc *child
	// notServingUntil is set while it reports NOT_SERVING; retireAt once
	// its key was deleted.
	notServingUntil time.Time
	retireAt        time.Time
}

// serving reports whether b is registered and SERVING, as far as the churn
// knows.
func (b *backend) serving() bool { return b.notServingUntil.IsZero() && b.retireAt.IsZero() }

// pool owns the backend processes. Only the churn goroutine uses it until
// close.
type pool struct {
	opts   churnOptions
	client *clientv3.Client
	nextID int
	live   []*backend
	// killed backends are restarted, same ID and port, by the next adds.
	killed []*backend
	// stopping are the processes sent SIGTERM and not yet waited for.
	stopping []*backend

	mu      sync.Mutex
	actions map[string]int
	liveNow int
	errs    []string
}

func newPool(opts churnOptions) (*pool, error) {
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{opts.etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("soak: etcd client: %w", err)
	}
	return &pool{opts: opts, client: client, actions: make(map[string]int)}, nil
}

// start starts a backend with the given ID and port (0: a free one).
func (p *pool) start(id string, port int) (*backend, error) {
	cmd := exec.Command(p.opts.exe)
	cmd.Env = append(os.Environ(),
		envBackend+"=1",
		envEtcd+"="+p.opts.etcdURL,
		envID+"="+id,
		envPort+"="+strconv.Itoa(port),
		envLeaseTTL+"="+p.opts.leaseTTL.String(),
	)
	proc, addr, err := startChild("backend "+id, cmd, filepath.Join(p.opts.logDir, id+".log"), backendReadyLine, 20*time.Second)
	if err != nil {
		return nil, err
	}
	_, portText, _ := net.SplitHostPort(addr)
	port, _ = strconv.Atoi(portText)
	b := &backend{id: id, port: port, addr: addr, proc: proc}
	p.live = append(p.live, b)
	p.setLive()
	p.opts.events.add("churn", "started", id+" "+addr)
	return b, nil
}

// add restarts the oldest killed backend on its port, or starts a new one.
func (p *pool) add() error {
	if len(p.killed) > 0 {
		b := p.killed[0]
		p.killed = p.killed[1:]
		if _, err := p.start(b.id, b.port); err == nil {
			return nil
		}
		// The port may be taken by now: a new one then.
		_, err := p.start(b.id, 0)
		return err
	}
	p.nextID++
	_, err := p.start(fmt.Sprintf("backend-%02d", p.nextID), 0)
	return err
}

// servingBackends are the live backends neither flapped nor retiring.
func (p *pool) servingBackends() []*backend {
	var out []*backend
	for _, b := range p.live {
		if b.serving() {
			out = append(out, b)
		}
	}
	return out
}

// remove takes b out of live.
func (p *pool) remove(b *backend) {
	for i, x := range p.live {
		if x == b {
			p.live = append(p.live[:i], p.live[i+1:]...)
			break
		}
	}
	p.setLive()
}

// act takes one churn action, or counts it skipped when the bounds forbid
// it.
func (p *pool) act(ctx context.Context, action string, now time.Time) error {
	serving := p.servingBackends()
	canTake := len(serving) > p.opts.minServing
	var victim *backend
	if canTake {
		victim = serving[p.opts.rand.IntN(len(serving))]
	}
	switch {
	case action == actionAdd && len(p.live) < p.opts.maxLive:
		if err := p.add(); err != nil {
			return err
		}
	case !canTake:
		// Too few serving: grow instead, if allowed.
		if len(p.live) >= p.opts.maxLive {
			action = actionSkipped
			break
		}
		action = actionAdd
		if err := p.add(); err != nil {
			return err
		}
	case action == actionKill:
		victim.proc.kill()
		p.remove(victim)
		p.killed = append(p.killed, victim)
	case action == actionFlap:
		victim.proc.signal(syscall.SIGUSR1)
		victim.notServingUntil = now.Add(p.opts.flapFor)
	case action == actionDelete:
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := p.client.Delete(ctx, registry.InstanceKey(registry.DefaultPrefix, registry.DefaultScope, echoService, victim.id))
		cancel()
		if err != nil {
			return fmt.Errorf("deleting %s: %w", victim.id, err)
		}
		victim.retireAt = now.Add(p.opts.retireAfter)
	case action == actionStop:
		p.terminate(victim)
	default:
		action = actionSkipped
	}
	p.count(action)
	detail := ""
	if victim != nil && action != actionAdd && action != actionSkipped {
		detail = victim.id + " " + victim.addr
	}
	p.opts.events.addAt(now, "churn", action, detail)
	return nil
}

// terminate sends SIGTERM and moves b to stopping.
func (p *pool) terminate(b *backend) {
	b.proc.terminate()
	p.remove(b)
	p.stopping = append(p.stopping, b)
}

// tick ends the flaps and retirements that are due and reaps the stopped
// processes; a live backend that exited on its own is an error.
func (p *pool) tick(now time.Time) {
	for _, b := range append([]*backend(nil), p.live...) {
		select {
		case <-b.proc.exited:
			p.remove(b)
			p.fail(fmt.Sprintf("%s exited on its own: %v", b.id, b.proc.exitError()))
			continue
		default:
		}
		if !b.notServingUntil.IsZero() && now.After(b.notServingUntil) {
			b.proc.signal(syscall.SIGUSR2)
			b.notServingUntil = time.Time{}
			p.opts.events.add("churn", "serving again", b.id+" "+b.addr)
		}
		if !b.retireAt.IsZero() && now.After(b.retireAt) {
			p.terminate(b)
			p.opts.events.add("churn", "deleted one stopped", b.id+" "+b.addr)
		}
	}
	kept := p.stopping[:0]
	for _, b := range p.stopping {
		select {
		case <-b.proc.exited:
			if err := b.proc.exitError(); err != nil {
				p.fail(fmt.Sprintf("stopping %v", err))
			}
		default:
			kept = append(kept, b)
		}
	}
	p.stopping = kept
}

// run churns until ctx ends.
func (p *pool) run(ctx context.Context) {
	// Ticks finer than the actions keep them on time and end flaps and
	// retirements promptly.
	tick := time.NewTicker(min(200*time.Millisecond, p.opts.every/2))
	defer tick.Stop()
	nextAction := time.Now().Add(p.opts.every)
	for i := 0; ; {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			p.tick(now)
			if now.Before(nextAction) {
				continue
			}
			nextAction = now.Add(p.opts.every)
			if err := p.act(ctx, churnAction(i), now); err != nil && ctx.Err() == nil {
				p.fail(err.Error())
			}
			i++
		}
	}
}

// close stops every backend (SIGTERM, then SIGKILL after a grace) and the
// etcd client.
func (p *pool) close() error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, b := range append(p.live, p.stopping...) {
		wg.Go(func() {
			if err := b.proc.stop(10 * time.Second); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	p.live, p.stopping = nil, nil
	p.setLive()
	errs = append(errs, p.client.Close())
	return errors.Join(errs...)
}

func (p *pool) count(action string) {
	p.mu.Lock()
	p.actions[action]++
	p.mu.Unlock()
}

func (p *pool) fail(msg string) {
	p.mu.Lock()
	p.errs = append(p.errs, msg)
	p.mu.Unlock()
}

func (p *pool) setLive() {
	p.mu.Lock()
	p.liveNow = len(p.live)
	p.mu.Unlock()
}

// snapshot returns the live count, the actions taken and the churn's
// errors, for the sampler and the report.
func (p *pool) snapshot() (live int, actions map[string]int, errs []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	actions = make(map[string]int, len(p.actions))
	for k, v := range p.actions {
		actions[k] = v
	}
	return p.liveNow, actions, append([]string(nil), p.errs...)
}
