package supervisor

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRotatingFile(t *testing.T) {
	tests := []struct {
		name     string
		existing string // in the file before it is opened
		maxSize  int64
		maxFiles int
		writes   []string
		want     map[string]string // by suffix: "" is the file, ".1" ...; absent files are ""
	}{
		{
			name:    "under the limit",
			maxSize: 10, maxFiles: 2,
			writes: []string{"abc\n", "def\n"},
			want:   map[string]string{"": "abc\ndef\n"},
		},
		{
			name:    "exactly the limit stays",
			maxSize: 8, maxFiles: 2,
			writes: []string{"abc\n", "def\n"},
			want:   map[string]string{"": "abc\ndef\n"},
		},
		{
			name:    "rotates before the write that would pass it",
			maxSize: 8, maxFiles: 2,
			writes: []string{"abc\n", "def\n", "ghi\n"},
			want:   map[string]string{"": "ghi\n", ".1": "abc\ndef\n"},
		},
		{
			name:    "keeps max files, drops the oldest",
			maxSize: 4, maxFiles: 2,
			writes: []string{"111\n", "222\n", "333\n", "444\n"},
			want:   map[string]string{"": "444\n", ".1": "333\n", ".2": "222\n"},
		},
		{
			name:    "a large write is not split",
			maxSize: 4, maxFiles: 1,
			writes: []string{"1\n", "a long line\n", "2\n"},
			want:   map[string]string{"": "2\n", ".1": "a long line\n"},
		},
		{
			name:    "no rotated files kept",
			maxSize: 4, maxFiles: 0,
			writes: []string{"111\n", "222\n"},
			want:   map[string]string{"": "222\n"},
		},
		{
			name:     "counts what the file held",
			existing: "old\n",
			maxSize:  6, maxFiles: 1,
			writes: []string{"new\n"},
			want:   map[string]string{"": "new\n", ".1": "old\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "w-0.log")
			if tt.existing != "" {
				if err := os.WriteFile(path, []byte(tt.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f, err := openRotatingFile(path, tt.maxSize, tt.maxFiles)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.writes {
				if n, err := f.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, suffix := range []string{"", ".1", ".2", ".3"} {
				data, err := os.ReadFile(path + suffix)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				got[suffix] = string(data)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRotatingFileClosed(t *testing.T) {
	f, err := openRotatingFile(filepath.Join(t.TempDir(), "w-0.log"), 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := f.Write([]byte("x")); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Write after Close: %v, want fs.ErrClosed", err)
	}
}
