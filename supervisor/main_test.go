package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// roleEnv makes the test binary play a supervised program (see runRole)
// instead of running the tests.
const roleEnv = "QUAESTOR_SUPERVISOR_TEST_ROLE"

// Files the roles write, named by the test in their environment.
const (
	startsFileEnv = "QUAESTOR_SUPERVISOR_TEST_STARTS" // one line per start: pid and time
	pidFileEnv    = "QUAESTOR_SUPERVISOR_TEST_PID"    // the grandchild's pid
)

// Set by TestMain.
var (
	// workerBin is the quaestor-worker binary built for the tests.
	workerBin string
	// testBin is this test binary, which plays the roles.
	testBin string
)

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	dir, err := os.MkdirTemp("", "quaestor-supervisor-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := setUp(dir); err != nil {
		fmt.Fprintln(os.Stderr, "supervisor tests:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

func setUp(dir string) error {
	var err error
	if testBin, err = os.Executable(); err != nil {
		return err
	}
	// Orphaned grandchildren come to this process, which reaps them, so
	// that a test sees them gone whatever the init of the machine does.
	if err := becomeSubreaper(); err != nil {
		return fmt.Errorf("becoming a subreaper: %w", err)
	}
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "github.com/quaestor-go/quaestor/cmd/quaestor-worker")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building quaestor-worker: %w\n%s", err, out)
	}
	workerBin = filepath.Join(dir, "quaestor-worker")
	if _, err := os.Stat(workerBin); err != nil {
		workerBin += ".exe"
	}
	return nil
}

// runRole plays a supervised program:
//   - exit-at-once: records its start, says so and exits 1;
//   - sleep: sleeps until killed;
//   - spawn-grandchild: starts a stubborn-sleeper, then sleeps until
//     killed (SIGTERM kills it);
//   - stubborn-sleeper: ignores SIGTERM, writes its pid and sleeps.
func runRole(role string) int {
	switch role {
	case "exit-at-once":
		if err := appendStart(os.Getenv(startsFileEnv)); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		fmt.Println("starting up")
		fmt.Fprintln(os.Stderr, "crashing on purpose")
		return 1
	case "sleep":
		fmt.Println("sleeping")
		time.Sleep(time.Hour)
	case "spawn-grandchild":
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		grandchild := exec.Command(self)
		grandchild.Env = append(os.Environ(), roleEnv+"=stubborn-sleeper")
		grandchild.Stdout, grandchild.Stderr = os.Stdout, os.Stderr
		if err := grandchild.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("spawned", grandchild.Process.Pid)
		time.Sleep(time.Hour)
	case "stubborn-sleeper":
		signal.Ignore(syscall.SIGTERM)
		if err := writeFileAtomically(os.Getenv(pidFileEnv), strconv.Itoa(os.Getpid())); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("ignoring SIGTERM")
		time.Sleep(time.Hour)
	default:
		fmt.Fprintf(os.Stderr, "unknown role %q\n", role)
		return 2
	}
	return 0
}

func appendStart(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d %d\n", os.Getpid(), time.Now().UnixNano())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFileAtomically writes path so that no reader sees it half written.
func writeFileAtomically(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
