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
		if got := half(tt.cpus); got != tt.want {
			t.Errorf("half(%d) = %d, want %d", tt.cpus, got, tt.want)
		}
	}
}

func TestShare(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	t.Run("environment set", func(t *testing.T) {
		t.Setenv("GOMAXPROCS", "3")
		if got := Default(); got != before {
			t.Errorf("Default with GOMAXPROCS set = %d, want %d, the runtime's", got, before)
		}
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
		want := half(before)
		if got := Default(); got != want {
			t.Errorf("Default = %d, want %d (half of %d)", got, want, before)
		}
		if got := Share(); got != want || runtime.GOMAXPROCS(0) != want {
			t.Errorf("Share = %d, GOMAXPROCS now %d, want %d (half of %d)", got, runtime.GOMAXPROCS(0), want, before)
		}
	})
}
