package proxy_test

import (
	"net"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jhump/protoreflect/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// startAlphaReflectionBackend serves Echo with only the v1alpha reflection
// service, as older servers do.
func startAlphaReflectionBackend(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	examplev1.RegisterEchoServer(srv, echo.New(echo.Options{Name: "alpha"}))
	rpbalpha.RegisterServerReflectionServer(srv, reflection.NewServer(reflection.ServerOptions{Services: srv}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestReflection does through the proxy what grpcurl list, describe and a
// call by name do: the client has no compiled-in descriptors.
func TestReflection(t *testing.T) {
	tests := []struct {
		name    string
		backend func(t *testing.T) string
	}{
		{name: "v1 backend", backend: func(t *testing.T) string { return startBackend(t, "b1").addr }},
		{name: "v1alpha-only backend", backend: startAlphaReflectionBackend},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := startProxy(t, map[string][]string{echoService: {tt.backend(t)}})
			ctx := testContext(t)
			client := grpcreflect.NewClientAuto(ctx, env.conn)
			defer client.Reset()

			services, err := client.ListServices()
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
				"grpc.reflection.v1alpha.ServerReflection", echoService}
			if diff := cmp.Diff(want, services); diff != "" {
				t.Errorf("listed services (-want +got):\n%s", diff)
			}

			svc, err := client.ResolveService(echoService)
			if err != nil {
				t.Fatalf("describe %s: %v", echoService, err)
			}
			var methods []string
			for _, m := range svc.GetMethods() {
				methods = append(methods, m.GetName())
			}
			slices.Sort(methods)
			if diff := cmp.Diff([]string{"BidiStream", "ClientStream", "ServerStream", "Unary"}, methods); diff != "" {
				t.Errorf("methods (-want +got):\n%s", diff)
			}
			// A message type on its own, and the proxy's own health service.
			if _, err := client.ResolveMessage("quaestor.example.v1.EchoRequest"); err != nil {
				t.Errorf("describe EchoRequest: %v", err)
			}
			if _, err := client.ResolveService("grpc.health.v1.Health"); err != nil {
				t.Errorf("describe the proxy's health service: %v", err)
			}
			if _, err := client.ResolveService("nosuch.Service"); err == nil {
				t.Errorf("describe an unknown service: no error")
			}

			// Call by name, with messages built from the reflected
			// descriptors only, as grpcurl -d '{...}' does.
			method := svc.FindMethodByName("Unary").UnwrapMethod()
			req := dynamicpb.NewMessage(method.Input())
			if err := protojson.Unmarshal([]byte(`{"payload":"aGk="}`), req); err != nil {
				t.Fatal(err)
			}
			resp := dynamicpb.NewMessage(method.Output())
			if err := env.conn.Invoke(ctx, "/"+echoService+"/Unary", req, resp); err != nil {
				t.Fatalf("call by name: %v", err)
			}
			got, err := protojson.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains([]string{`{"payload":"aGk=","server":"b1","sequence":1}`, `{"payload":"aGk=","server":"alpha","sequence":1}`}, string(compactJSON(t, got))) {
				t.Errorf("response = %s", got)
			}
		})
	}
}

func compactJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var out []byte
	inString := false
	for _, c := range b {
		if c == '"' {
			inString = !inString
		}
		if !inString && (c == ' ' || c == '\n') {
			continue
		}
		out = append(out, c)
	}
	return out
}
