package procs

import (
	"os"
	"runtime"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestHalf(t *testing.T) {
	for _, tt := range []struct{ cpus, want int }{
		{1, 1}, {2, 1}, {3, 2}, {4, 2}, {8, 4}, {64, 32},
	} {
		if got := Half(tt.cpus); got != tt.want {
			t.Errorf("Half(%d) = %d, want %d", tt.cpus, got, tt.want)
		}
	}
}

func TestShare(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	t.Run("environment set", func(t *testing.T) {
		t.Setenv("GOMAXPROCS", "3")
		if got := Share(); got != before || runtime.GOMAXPROCS(0) != before {
			t.Errorf("Share with GOMAXPROCS set = %d, GOMAXPROCS now %d, want %d unchanged", got, runtime.GOMAXPROCS(0), before)
		}
	})
	t.Run("environment unset", func(t *testing.T) {
		// t.Setenv restores the variable at the end; unset it for Share.
		t.Setenv("GOMAXPROCS", "")
		if err := os.Unsetenv("GOMAXPROCS"); err != nil {
			t.Fatal(err)
		}
		want := Half(before)
		if got := Share(); got != want || runtime.GOMAXPROCS(0) != want {
			t.Errorf("Share = %d, GOMAXPROCS now %d, want %d (half of %d)", got, runtime.GOMAXPROCS(0), want, before)
		}
	})
}
