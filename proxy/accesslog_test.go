package proxy_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/quaestor-go/quaestor/internal/syncbuf"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

func TestAccessLog(t *testing.T) {
	be := startBackend(t, "b1")
	table := routing.NewTable()
	table.Update(echoService, routing.SourceStatic, []routing.Endpoint{{Addr: be.addr}})
	router := newTestRouter(t, routing.Options{Table: table})
	var logs syncbuf.Buffer
	cfg := proxy.DefaultConfig()
	cfg.AccessLog = true
	addr, _ := serveProxy(t, proxy.Options{Config: cfg, Router: router, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})

	echo := examplev1.NewEchoClient(dial(t, addr))
	ctx := testContext(t)
	if _, err := echo.Unary(ctx, &examplev1.EchoRequest{Payload: []byte("12345"), ResponseSize: 1000}); err != nil {
		t.Fatal(err)
	}
	_, _ = echo.Unary(ctx, &examplev1.EchoRequest{ErrorCode: int32(codes.NotFound)})

	var entries []map[string]any
	for _, line := range logs.Lines() {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err == nil && e["msg"] == "access" {
			entries = append(entries, e)
		}
	}
	if len(entries) != 2 {
		t.Fatalf("access lines: %v", logs.Lines())
	}
	ok := entries[0]
	if ok["method"] != "/quaestor.example.v1.Echo/Unary" || ok["backend"] != be.addr || ok["code"] != "OK" ||
		ok["bytes_out"].(float64) < 1000 || ok["bytes_in"].(float64) < 5 || !strings.HasPrefix(ok["client"].(string), "127.0.0.1:") {
		t.Errorf("access line: %v", ok)
	}
	if entries[1]["code"] != "NotFound" {
		t.Errorf("failed call's access line: %v", entries[1])
	}
}
