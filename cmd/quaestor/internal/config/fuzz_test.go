package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds configuration files: loading never panics, and every
// refusal says which file and what is wrong in it.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"proxy:\n  listen: 127.0.0.1:5150\n",
		"services:\n  - name: a.B\n    endpoints: [127.0.0.1:1]\n    policy: consistent-hash\n    hash_key: x\n",
		"etcd:\n  mode: external\n  endpoints: [https://10.0.0.1:2379]\n",
		"supervisor:\n  agents:\n    - name: w\n      executable: ./w\n      args: [\"{Port}\"]\n      ports: [1, 2]\n      instances: 2\n",
		"proxy: [\n", "proxy:\n  max_message_size: -5\n", "health:\n  interval: soon\n", "{}", "", "- a\n- b\n",
	} {
		f.Add(seed)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(dir, "quaestor.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(Source{Path: path})
		if err != nil && !strings.Contains(err.Error(), path) && !strings.HasPrefix(err.Error(), "config") {
			t.Errorf("error %q names neither the file nor the config", err)
		}
	})
}
