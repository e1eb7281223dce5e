package loadreport

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    cpuTimes
		wantErr string // in the error; "" for none
	}{
		{
			name: "current kernel",
			stat: "cpu  4705 356 584 3699 23 0 12 5 7 9\n" +
				"cpu0 1393280 32966 572056 13343292 6130 0 17875 0 0 0\n" +
				"intr 114930548 113199788 3 0 5 263 0 4 [...]\n" +
				"ctxt 1990473\nbtime 1062191376\n",
			// busy: user+nice+system+irq+softirq+steal; guest and
			// guest_nice are already in user and nice.
			want: cpuTimes{busy: 4705 + 356 + 584 + 0 + 12 + 5, total: 4705 + 356 + 584 + 3699 + 23 + 0 + 12 + 5},
		},
		{
			name: "2.4 kernel, four values",
			stat: "cpu  100 10 50 840\n",
			want: cpuTimes{busy: 160, total: 1000},
		},
		{name: "no cpu line", stat: "cpu0 1 2 3 4\nctxt 5\n", wantErr: "no cpu line"},
		{name: "empty", stat: "", wantErr: "no cpu line"},
		{name: "short cpu line", stat: "cpu  1 2 3\n", wantErr: "at least 4"},
		{name: "bad number", stat: "cpu  1 2 x 4\n", wantErr: "cpu value 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat(tt.stat)
			if !errorContains(err, tt.wantErr) {
				t.Fatalf("parseProcStat: %v, want an error containing %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(cpuTimes{})); diff != "" {
				t.Errorf("parseProcStat (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMeminfo(t *testing.T) {
	tests := []struct {
		name    string
		meminfo string
		want    float64
		wantErr string
	}{
		{
			name: "MemAvailable",
			meminfo: "MemTotal:       16000000 kB\nMemFree:         1000000 kB\n" +
				"MemAvailable:    4000000 kB\nBuffers:          500000 kB\nCached:          2000000 kB\n",
			want: 75,
		},
		{
			name:    "before 3.14: free + buffers + cached",
			meminfo: "MemTotal:  1000 kB\nMemFree:  100 kB\nBuffers:  50 kB\nCached:  250 kB\nSwapCached: 7 kB\n",
			want:    60,
		},
		{
			name:    "available above total",
			meminfo: "MemTotal: 1000 kB\nMemAvailable: 1200 kB\n",
			want:    0,
		},
		{name: "no MemTotal", meminfo: "MemFree: 100 kB\n", wantErr: "no MemTotal"},
		{name: "bad number", meminfo: "MemTotal: lots kB\n", wantErr: "MemTotal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMeminfo(tt.meminfo)
			if !errorContains(err, tt.wantErr) {
				t.Fatalf("parseMeminfo: %v, want an error containing %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseMeminfo (-want +got):\n%s", diff)
			}
		})
	}
}

// errorContains reports whether err contains want, or is nil when want is
// empty.
func errorContains(err error, want string) bool {
	if want == "" {
		return err == nil
	}
	return err != nil && strings.Contains(err.Error(), want)
}

// TestSystemMachine reads this machine's /proc.
func TestSystemMachine(t *testing.T) {
	m := systemMachine()
	times, err := m.cpuTimes()
	if err != nil {
		t.Fatalf("reading CPU times: %v", err)
	}
	if times.total == 0 || times.busy > times.total {
		t.Errorf("CPU times %+v, want busy within a positive total", times)
	}
	mem, err := m.memoryPercent()
	if err != nil {
		t.Fatalf("reading memory: %v", err)
	}
	if mem <= 0 || mem > 100 {
		t.Errorf("memory %v%%, want within (0, 100]", mem)
	}
}
