package registry

import (
	"strings"
	"testing"
)

// FuzzDecodeValue feeds registry values as anyone with write access to
// etcd could write them: decoding never panics, and a value it accepts is
// a routable endpoint; one it refuses gets an error saying what is wrong.
func FuzzDecodeValue(f *testing.F) {
	for _, seed := range []string{
		`{"Op":0,"Addr":"127.0.0.1:5161"}`,
		`{"Op":0,"Addr":"10.0.0.1:1","Metadata":{"tls":true,"weight":3,"agent":"a","zone":"z"}}`,
		`{"Op":1,"Addr":"127.0.0.1:5161"}`,
		`{"Op":0,"Addr":"host:99999"}`,
		`{"Op":0,"Addr":"[::1]:80","Metadata":{"weight":-1}}`,
		`{"Op":0,"Addr":"a:1","Metadata":{"nested":{"x":[1,2]}}}`,
		`not json`, ``, `null`, `[]`, `{"Addr":12}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		ep, err := decodeValue(value)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "value ") {
				t.Errorf("error %q does not say it is about the value", err)
			}
			return
		}
		if ep.Addr == "" {
			t.Errorf("accepted %q with no address", value)
		}
	})
}
