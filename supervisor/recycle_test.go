package supervisor

import (
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/quaestor-go/quaestor/internal/testwait"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// TestRecycleWaitsForRequestsInFlight holds a call on a worker past its
// recycle_after: the recycling is postponed while the call runs, and done
// once it has ended.
func TestRecycleWaitsForRequestsInFlight(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	logs := newLogRecorder()
	logs.dumpOnFailure(t)
	agent := workerAgent("recycled", 1)
	agent.RecycleAfter = 300 * time.Millisecond
	s := startSupervisor(ctx, t, Options{Config: testConfig(t, agent), Logger: logs.logger()})
	testwait.For(ctx, t, "the worker serving", func() bool { return instanceStatus(t, s, "recycled", 0).Health == "SERVING" })
	first := instanceStatus(t, s, "recycled", 0)

	conn, err := grpc.NewClient(net.JoinHostPort(loopback, strconv.Itoa(first.Port)), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const callDelay = 1500 * time.Millisecond
	callStart := time.Now()
	called := make(chan error, 1)
	go func() {
		_, err := examplev1.NewEchoClient(conn).Unary(ctx, &examplev1.EchoRequest{Delay: durationpb.New(callDelay)})
		called <- err
	}()

	pid := strconv.Itoa(first.PID)
	testwait.For(ctx, t, "the recycling postponed", func() bool {
		return len(logs.find("recycling postponed: requests in flight", map[string]string{"agent": "recycled"})) > 0
	})
	if st := instanceStatus(t, s, "recycled", 0); st.PID != first.PID {
		t.Fatalf("the instance was restarted (pid %d, was %d) while a call was in flight", st.PID, first.PID)
	}
	select {
	case err := <-called:
		if err != nil {
			t.Fatalf("the held call failed: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the held call did not return")
	}
	testwait.For(ctx, t, "the instance recycled", func() bool {
		st := instanceStatus(t, s, "recycled", 0)
		return st.PID != 0 && st.PID != first.PID
	})
	recycling := logs.find("recycling the instance", map[string]string{"pid": pid})
	if len(recycling) != 1 {
		t.Fatalf("%d recycling records for pid %s, want 1", len(recycling), pid)
	}
	// The call could not end before its delay: a recycling decided
	// earlier would have been decided while it was in flight.
	if at := recycling[0].time; at.Before(callStart.Add(callDelay)) {
		t.Errorf("recycled at %s, before the call could end (%s)", at.Format(time.StampMilli), callStart.Add(callDelay).Format(time.StampMilli))
	}
	if st := instanceStatus(t, s, "recycled", 0); st.Restarts != 1 {
		t.Errorf("restarts after the recycling: %d, want 1", st.Restarts)
	}
}

// TestRecycleWithoutServiceNames recycles a program that is not checked
// when recycle_after has passed.
func TestRecycleWithoutServiceNames(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	agent := roleAgent("sleeper", "sleep", nil)
	agent.RecycleAfter = 200 * time.Millisecond
	s := startSupervisor(ctx, t, Options{Config: testConfig(t, agent)})
	first := instanceStatus(t, s, "sleeper", 0)
	testwait.For(ctx, t, "two recyclings", func() bool { return instanceStatus(t, s, "sleeper", 0).Restarts >= 2 })
	if st := instanceStatus(t, s, "sleeper", 0); st.PID == first.PID {
		t.Errorf("pid %d unchanged after %d restarts", st.PID, st.Restarts)
	}
}
