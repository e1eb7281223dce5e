package admin_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/admin"
)

// requireBrowser names the variable that turns a missing Chromium from a
// skip into a failure. CI sets it (after .ci/ensure-chromium.sh).
const requireBrowser = "REQUIRE_BROWSER_TEST"

// findChromium returns the path of a Chromium (or Chrome) to drive. Without
// one it skips the test, or fails it when requireBrowser is set.
func findChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	const where = "no Chromium found (/usr/bin/chromium, or chromium, chromium-browser, google-chrome in PATH)"
	if os.Getenv(requireBrowser) != "" {
		t.Fatalf("%s, and %s is set; .ci/ensure-chromium.sh installs Debian's chromium", where, requireBrowser)
	}
	t.Skipf("%s: skipping the status page's browser test; .ci/ensure-chromium.sh installs it, %s=1 makes this a failure", where, requireBrowser)
	return ""
}

// startBrowser starts a headless Chromium for ctx. The returned stop closes
// it and waits until the process and chromedp's goroutines are gone.
func startBrowser(t *testing.T, ctx context.Context, chromium string) (browser context.Context, stop func()) {
	t.Helper()
	var output bytes.Buffer // written by chromedp until the allocator is done
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		// Exactly these flags: the build machines have a closed network,
		// so nothing may try to reach the outside.
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(&output),
	)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	stop = func() {
		closeCtx, cancel := context.WithTimeout(browser, 10*time.Second)
		defer cancel()
		if err := chromedp.Cancel(closeCtx); err != nil {
			t.Logf("closing chromium: %v", err)
		}
		cancelBrowser()
		cancelAlloc() // waits for the process
		if t.Failed() && output.Len() > 0 {
			t.Logf("chromium's output:\n%s", output.String())
		}
	}
	// Start it now, so that a Chromium that cannot start fails here, clearly.
	if err := chromedp.Do(browser); err != nil {
		stop()
		t.Fatalf("starting %s: %v", chromium, err)
	}
	return browser, stop
}

// fakeStatus is a Snapshot the test changes while the page shows it.
type fakeStatus struct {
	mu   sync.Mutex
	snap admin.Snapshot
}

func (f *fakeStatus) get() admin.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fakeStatus) update(change func(*admin.Snapshot)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(&f.snap)
}

// runningCluster is two agents, three Echo workers and one billing worker,
// all running, registered and healthy.
func runningCluster(now time.Time) admin.Snapshot {
	worker := func(agent string, instance, port int) admin.ProcessStatus {
		return admin.ProcessStatus{
			Agent: agent, Instance: instance, State: "running", PID: 4100 + port%100, Port: port,
			Addr: fmt.Sprintf("127.0.0.1:%d", port), Health: "SERVING", Restarts: 0,
			StartedAt: now.Add(-(42*time.Minute + 30*time.Second)), Registered: true,
			LastLines: []string{fmt.Sprintf("%s-%d: serving on 127.0.0.1:%d", agent, instance, port)},
		}
	}
	endpoint := func(port int, id string, load float64) admin.EndpointStatus {
		return admin.EndpointStatus{
			Addr: fmt.Sprintf("127.0.0.1:%d", port), Source: "etcd", ID: id, Healthy: true,
			InFlight: 2, Picks: 12345, LoadRate: load, Utilization: 0.2, LoadSource: "report", LatencyMS: 1.7,
		}
	}
	return admin.Snapshot{
		Version:   "v0.4.0-test",
		StartedAt: now.Add(-3 * time.Hour),
		Etcd:      &admin.EtcdStatus{Mode: "embedded", Ready: true, Connected: true, Watching: true, Revision: 812},
		Services: []admin.ServiceStatus{
			{Name: "quaestor.example.v1.Echo", Policy: "least-loaded", Endpoints: []admin.EndpointStatus{
				endpoint(5161, "worker-0", 0.25), endpoint(5162, "worker-1", 0.5), endpoint(5163, "worker-2", -1),
			}},
			{Name: "billing.v1.Invoices", Policy: "round-robin", Endpoints: []admin.EndpointStatus{
				endpoint(5171, "billing-0", 0.1),
			}},
		},
		Processes: []admin.ProcessStatus{
			worker("worker", 0, 5161), worker("worker", 1, 5162), worker("worker", 2, 5163), worker("billing", 0, 5171),
		},
	}
}

// The status page in a real headless Chromium: it loads, shows the
// instances of a running cluster, reflects a killed instance, and keeps the
// last data when quaestor stops answering.
func TestStatusPage(t *testing.T) {
	chromium := findChromium(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	now := time.Now()
	status := &fakeStatus{snap: runningCluster(now)}
	srv, err := admin.New(admin.Options{
		Listen: "127.0.0.1:0",
		Status: status.get,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	var stopServer sync.Once
	shutdown := func() {
		stopServer.Do(func() {
			if err := srv.Shutdown(ctx); err != nil {
				t.Error(err)
			}
			if err := <-served; err != nil {
				t.Error(err)
			}
		})
	}
	defer shutdown()

	browser, stopBrowser := startBrowser(t, ctx, chromium)
	defer stopBrowser()

	// An exception in the page would leave it silently stale.
	var exceptions struct {
		sync.Mutex
		texts []string
	}
	if err := chromedp.Listen(browser, func(ev any) {
		if ev, ok := ev.(*runtime.EventExceptionThrown); ok {
			text := ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				text += " " + ex.Description
			}
			exceptions.Lock()
			exceptions.texts = append(exceptions.texts, text)
			exceptions.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		exceptions.Lock()
		defer exceptions.Unlock()
		for _, text := range exceptions.texts {
			t.Errorf("exception in the page: %s", text)
		}
	}()

	waitFor := func(what, selector string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(browser, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(selector))); err != nil {
			t.Fatalf("waiting for %s (%s): %v", what, selector, err)
		}
	}
	if err := chromedp.Do(browser,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate("http://"+srv.Addr()+"/"),
	); err != nil {
		t.Fatal(err)
	}
	waitFor("the first endpoint", `#services tr[data-endpoint="127.0.0.1:5161"]`)
	waitFor("the last process", `#processes tr[data-process="billing-0"]`)

	endpoints := evaluate[[]row](t, browser, "the endpoint rows", endpointRows)
	wantEndpoints := []row{
		{Key: "127.0.0.1:5161", Service: "quaestor.example.v1.Echo", State: "healthy", Cells: []string{"quaestor.example.v1.Echo", "least-loaded", "127.0.0.1:5161worker-0", "etcd", "healthy", "2", "0.25", "12,345", "1.70 ms"}},
		{Key: "127.0.0.1:5162", Service: "quaestor.example.v1.Echo", State: "healthy", Cells: []string{"", "", "127.0.0.1:5162worker-1", "etcd", "healthy", "2", "0.50", "12,345", "1.70 ms"}},
		{Key: "127.0.0.1:5163", Service: "quaestor.example.v1.Echo", State: "healthy", Cells: []string{"", "", "127.0.0.1:5163worker-2", "etcd", "healthy", "2", "-", "12,345", "1.70 ms"}},
		{Key: "127.0.0.1:5171", Service: "billing.v1.Invoices", State: "healthy", Cells: []string{"billing.v1.Invoices", "round-robin", "127.0.0.1:5171billing-0", "etcd", "healthy", "2", "0.10", "12,345", "1.70 ms"}},
	}
	if diff := cmp.Diff(wantEndpoints, endpoints); diff != "" {
		t.Errorf("endpoint rows (-want +got):\n%s", diff)
	}
	processes := evaluate[[]row](t, browser, "the process rows", processRows)
	for i, p := range processes {
		// Seconds pass while the test runs.
		if len(p.Cells) > 7 && strings.HasPrefix(p.Cells[7], "42m ") {
			processes[i].Cells[7] = "42m"
		}
	}
	var wantProcesses []row
	for _, p := range []struct{ agent, instance, pid, port string }{
		{"worker", "0", "4161", "5161"}, {"worker", "1", "4162", "5162"}, {"worker", "2", "4163", "5163"}, {"billing", "0", "4171", "5171"},
	} {
		wantProcesses = append(wantProcesses, row{
			Key: p.agent + "-" + p.instance, State: "running",
			Cells: []string{p.agent, p.instance, "running", p.pid, p.port, "SERVING", "0", "42m", "-"},
		})
	}
	if diff := cmp.Diff(wantProcesses, processes); diff != "" {
		t.Errorf("process rows (-want +got):\n%s", diff)
	}
	head := evaluate[header](t, browser, "the header", headerFacts)
	if diff := cmp.Diff(header{Version: "v0.4.0-test", EtcdReady: "true", EtcdState: "ready", EtcdDetail: "embedded · revision 812 · 0 watch restarts", State: "ok"}, head); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}

	// worker-2 is killed: the supervisor waits to restart it, the proxy
	// marks its endpoint unhealthy, and etcd is lagging behind.
	killedLines := []string{"worker-2: serving on 127.0.0.1:5163", `<img src=x onerror="document.title='pwned'"> & <b>not bold</b>`}
	status.update(func(s *admin.Snapshot) {
		p := &s.Processes[2]
		p.State, p.PID, p.Health, p.Registered, p.Restarts = "backoff", 0, "UNREACHABLE", false, 1
		p.LastExit, p.LastExitAt, p.LastLines = "signal: killed", time.Now(), killedLines
		s.Services[0].Endpoints[2].Healthy = false
		s.Etcd.Ready, s.Etcd.Watching, s.Etcd.LastError = false, false, "watch: etcdserver: no leader"
	})
	waitFor("the killed process in backoff", `#processes tr[data-process="worker-2"][data-state="backoff"]`)
	waitFor("its endpoint unhealthy", `#services tr[data-endpoint="127.0.0.1:5163"][data-health="unhealthy"]`)
	waitFor("etcd not ready", `#etcd[data-ready="false"]`)

	killed := evaluate[struct {
		Exit    string `json:"exit"`
		Log     string `json:"log"`
		LogHTML int    `json:"logElements"`
		Etcd    string `json:"etcd"`
		Alert   string `json:"alert"`
		Title   string `json:"title"`
	}](t, browser, "the killed process", `(() => {
		const row = document.querySelector('#processes tr[data-process="worker-2"]');
		const pre = document.querySelector('#processes tr[data-log-for="worker-2"] pre');
		return {
			exit: row.cells[8].textContent,
			log: pre.textContent,
			logElements: pre.children.length,
			etcd: document.getElementById("etcd-state").textContent,
			alert: document.getElementById("etcd-error").textContent,
			title: document.title,
		};
	})()`)
	if !strings.HasPrefix(killed.Exit, "signal: killed, ") || !strings.HasSuffix(killed.Exit, " ago") {
		t.Errorf("last exit of worker-2 = %q, want signal: killed, … ago", killed.Exit)
	}
	if want := strings.Join(killedLines, "\n"); killed.Log != want || killed.LogHTML != 0 {
		t.Errorf("log of worker-2 = %q with %d elements, want the lines as text: %q", killed.Log, killed.LogHTML, want)
	}
	if killed.Etcd != "NOT READY" || !strings.Contains(killed.Alert, "watch: etcdserver: no leader") {
		t.Errorf("etcd state = %q, alert %q; want NOT READY and the last error", killed.Etcd, killed.Alert)
	}
	if killed.Title != "quaestor (3 problems)" {
		t.Errorf("title = %q, want quaestor (3 problems)", killed.Title)
	}

	// An open log stays open while the page refreshes.
	if err := chromedp.Do(browser, chromedp.Click(chromedp.CSS(`#processes tr[data-log-for="worker-2"] summary`))); err != nil {
		t.Fatal(err)
	}
	waitFor("worker-2's log", `#processes tr[data-log-for="worker-2"] pre`)
	status.update(func(s *admin.Snapshot) {
		p := &s.Processes[2]
		p.State, p.PID, p.Health, p.StartedAt = "running", 5063, "SERVING", time.Now()
	})
	waitFor("worker-2 restarted", `#processes tr[data-process="worker-2"][data-state="running"]`)
	waitFor("worker-2's log, still open", `#processes tr[data-log-for="worker-2"] pre`)

	shot, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "status-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := png.DecodeConfig(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	if len(shot) < 20_000 || img.Width < 1000 || img.Height < 400 {
		t.Errorf("screenshot %s: %d bytes, %dx%d; want a page's worth", path, len(shot), img.Width, img.Height)
	}

	// quaestor stops answering: the page says so and keeps the last data.
	shutdown()
	waitFor("the unreachable banner", `#unreachable`)
	if endpoints := evaluate[[]row](t, browser, "the endpoint rows after the stop", endpointRows); len(endpoints) != 4 {
		t.Errorf("after the stop the page shows %d endpoints, want the last 4", len(endpoints))
	}
	if head := evaluate[header](t, browser, "the header after the stop", headerFacts); head.State != "unreachable" || !strings.Contains(head.Unreachable, "quaestor unreachable") {
		t.Errorf("after the stop: state %q, banner %q; want unreachable", head.State, head.Unreachable)
	}
}

// The page and its assets are served from the binary, with a policy that
// keeps everything on this server; without a status func there is no page.
func TestStatusPageFiles(t *testing.T) {
	for _, tc := range []struct {
		name        string
		status      func() admin.Snapshot
		path        string
		code        int
		contentType string
		contains    string
	}{
		{name: "page", status: runningClusterNow, path: "/", code: http.StatusOK, contentType: "text/html; charset=utf-8", contains: `<script src="page/app.js" defer></script>`},
		{name: "script", status: runningClusterNow, path: "/page/app.js", code: http.StatusOK, contentType: "text/javascript; charset=utf-8", contains: `fetch("api/status"`},
		{name: "style", status: runningClusterNow, path: "/page/style.css", code: http.StatusOK, contentType: "text/css; charset=utf-8", contains: ".badge.bad"},
		{name: "unknown asset", status: runningClusterNow, path: "/page/index.html", code: http.StatusNotFound},
		{name: "unknown path", status: runningClusterNow, path: "/nope", code: http.StatusNotFound},
		{name: "no status", path: "/", code: http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := admin.New(admin.Options{Listen: "127.0.0.1:0", Status: tc.status, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve() }()
			defer func() {
				if err := srv.Shutdown(t.Context()); err != nil {
					t.Error(err)
				}
				if err := <-served; err != nil {
					t.Error(err)
				}
			}()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.Addr()+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.code {
				t.Fatalf("GET %s = %s, want %d", tc.path, resp.Status, tc.code)
			}
			if tc.code != http.StatusOK {
				return
			}
			if got := resp.Header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.contentType)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("GET %s: Content-Security-Policy %q, want default-src 'self'", tc.path, csp)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Errorf("GET %s: body has no %q", tc.path, tc.contains)
			}
		})
	}
}

func runningClusterNow() admin.Snapshot { return runningCluster(time.Now()) }

// row is a table row as the page shows it.
type row struct {
	Key     string   `json:"key"`
	Service string   `json:"service,omitempty"`
	State   string   `json:"state"`
	Cells   []string `json:"cells"`
}

const endpointRows = `[...document.querySelectorAll("#services tr[data-endpoint]")].map((tr) => ({
	key: tr.dataset.endpoint, service: tr.dataset.service, state: tr.dataset.health,
	cells: [...tr.cells].map((td) => td.textContent),
}))`

const processRows = `[...document.querySelectorAll("#processes tr[data-process]")].map((tr) => ({
	key: tr.dataset.process, state: tr.dataset.state,
	cells: [...tr.cells].map((td) => td.textContent),
}))`

// header is the page's header and banner.
type header struct {
	Version     string `json:"version"`
	EtcdReady   string `json:"etcdReady"`
	EtcdState   string `json:"etcdState"`
	EtcdDetail  string `json:"etcdDetail"`
	State       string `json:"state"`
	Unreachable string `json:"unreachable,omitempty"`
}

const headerFacts = `(() => {
	const banner = document.getElementById("unreachable");
	return {
		version: document.getElementById("version").textContent,
		etcdReady: document.getElementById("etcd").dataset.ready,
		etcdState: document.getElementById("etcd-state").textContent,
		etcdDetail: document.getElementById("etcd-detail").textContent,
		state: document.body.dataset.state,
		unreachable: banner.hidden ? "" : banner.textContent.replace(/\s+/g, " ").trim(),
	};
})()`

// evaluate runs a JavaScript expression in the page and decodes its value.
func evaluate[T any](t *testing.T, browser context.Context, what, expression string) T {
	t.Helper()
	v, err := chromedp.Run(browser, chromedp.Evaluate[T](expression))
	if err != nil {
		t.Fatalf("reading %s: %v", what, err)
	}
	return v
}
