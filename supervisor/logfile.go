package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// rotatingFile is an append-only log file rotated by size: when a write
// would take it past maxSize, path becomes path.1, path.1 becomes path.2,
// and so on up to path.{maxFiles}; the oldest is removed. A write is never
// split between two files, so one larger than maxSize fills a file alone.
type rotatingFile struct {
	path string

	mu       sync.Mutex
	maxSize  int64
	maxFiles int
	file     *os.File
	size     int64
}

// openRotatingFile opens path for appending, creating it if needed.
func openRotatingFile(path string, maxSize int64, maxFiles int) (*rotatingFile, error) {
	r := &rotatingFile{path: path, maxSize: maxSize, maxFiles: maxFiles}
	if err := r.open(os.O_APPEND); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotatingFile) open(mode int) error {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|mode, 0o644)
	if err != nil {
		return fmt.Errorf("opening log file: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening log file: %w", err)
	}
	r.file, r.size = f, info.Size()
	return nil
}

// setLimits changes the rotation limits from the next write on.
func (r *rotatingFile) setLimits(maxSize int64, maxFiles int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maxSize, r.maxFiles = maxSize, maxFiles
}

// Write appends p, rotating first if p would take the file past maxSize.
func (r *rotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.file == nil {
		return 0, fs.ErrClosed
	}
	if r.size > 0 && r.size+int64(len(p)) > r.maxSize {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.file.Write(p)
	r.size += int64(n)
	return n, err
}

// rotate shifts the files by one and starts an empty one. It is called
// with r.mu held.
func (r *rotatingFile) rotate() error {
	// The file is closed first: Windows renames no open file.
	if err := r.file.Close(); err != nil {
		return fmt.Errorf("rotating log file: %w", err)
	}
	r.file = nil
	if r.maxFiles > 0 {
		if err := os.Remove(r.rotatedName(r.maxFiles)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotating log file: %w", err)
		}
		for i := r.maxFiles - 1; i >= 1; i-- {
			if err := os.Rename(r.rotatedName(i), r.rotatedName(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("rotating log file: %w", err)
			}
		}
		if err := os.Rename(r.path, r.rotatedName(1)); err != nil {
			return fmt.Errorf("rotating log file: %w", err)
		}
	}
	return r.open(os.O_TRUNC)
}

func (r *rotatingFile) rotatedName(i int) string { return fmt.Sprintf("%s.%d", r.path, i) }

// Close closes the file; later writes fail.
func (r *rotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.file == nil {
		return nil
	}
	err := r.file.Close()
	r.file = nil
	return err
}
