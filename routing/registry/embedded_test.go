package registry

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEmbeddedStartErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	free := func() string { return fmt.Sprintf("http://127.0.0.1:%d", freePort(t)) }
	tests := []struct {
		name    string
		opts    EmbeddedOptions
		wantErr string
	}{
		{name: "client port taken",
			opts:    EmbeddedOptions{Dir: t.TempDir(), ClientURL: "http://" + taken.Addr().String(), PeerURL: free()},
			wantErr: "address already in use"},
		{name: "dir not a directory",
			opts:    EmbeddedOptions{Dir: filepath.Join(file, "etcd"), ClientURL: free(), PeerURL: free()},
			wantErr: "etcd.dir " + filepath.Join(file, "etcd")},
		{name: "cluster without quorum",
			opts: EmbeddedOptions{Name: "m1", Dir: t.TempDir(), ClientURL: free(), PeerURL: "http://127.0.0.1:1",
				InitialCluster: "m1=http://127.0.0.1:1,m2=http://127.0.0.1:2", StartTimeout: 500 * time.Millisecond},
			wantErr: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Logger = quietLogger
			e, err := StartEmbedded(tt.opts)
			if err == nil {
				e.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestEmbeddedRestartKeepsData(t *testing.T) {
	opts := EmbeddedOptions{
		Dir:       filepath.Join(t.TempDir(), "etcd"),
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		Logger:    quietLogger,
	}
	e, err := StartEmbedded(opts)
	if err != nil {
		t.Fatal(err)
	}
	client := newClient(t, opts.ClientURL)
	ctx := testContext(t)
	if _, err := client.Put(ctx, "/quaestor/k", "v"); err != nil {
		t.Fatal(err)
	}
	e.Close()
	// The ports are released: the same member starts again on them.
	e, err = StartEmbedded(opts)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer e.Close()
	resp, err := client.Get(ctx, "/quaestor/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart: %v, %v", resp, err)
	}
}
