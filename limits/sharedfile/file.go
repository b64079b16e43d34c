package sharedfile

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/google/renameio/v2"
)

// File is the value a file holds, parsed, and kept in force: a bad file
// on reload is an error and the value in force stays. With path "" the
// value lives in memory only. It is safe for concurrent use; Load never
// blocks.
type File[T any] struct {
	path  string
	parse func([]byte) (T, error)
	cur   atomic.Pointer[T]
	mu    sync.Mutex // serialises reloads and edits in this process; the lock file, across processes
	sum   [32]byte   // of the bytes in force
}

// Open reads path with parse; a missing file is parse(nil) (the first
// Edit creates it).
func Open[T any](path string, parse func([]byte) (T, error)) (*File[T], error) {
	f := &File[T]{path: path, parse: parse}
	empty, err := parse(nil)
	if err != nil {
		return nil, err
	}
	f.cur.Store(&empty)
	f.sum = sha256.Sum256(nil)
	if _, err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Load returns the value in force.
func (f *File[T]) Load() T { return *f.cur.Load() }

// Reload reads the file again; it reports whether its content changed.
func (f *File[T]) Reload() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloadLocked()
}

func (f *File[T]) reloadLocked() (bool, error) {
	if f.path == "" {
		return false, nil
	}
	raw, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		raw, err = nil, nil
	}
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(raw)
	if sum == f.sum {
		return false, nil
	}
	v, err := f.parse(raw)
	if err != nil {
		return false, fmt.Errorf("%s: %w", f.path, err)
	}
	f.cur.Store(&v)
	f.sum = sum
	return true, nil
}

// Edit changes the value from the file's current content, under an
// advisory lock on path+".lock" (another process may be editing it too):
// change gets the value in force and returns the new value and the bytes
// that hold it, which replace the file atomically. A file that cannot be
// read is never overwritten; an error from change leaves everything as
// it was.
func (f *File[T]) Edit(change func(T) (T, []byte, error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.path == "" {
		v, _, err := change(f.Load())
		if err == nil {
			f.cur.Store(&v)
		}
		return err
	}
	lock, err := os.OpenFile(f.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := f.reloadLocked(); err != nil {
		return err
	}
	v, raw, err := change(f.Load())
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(f.path, raw, 0o600); err != nil {
		return err
	}
	f.cur.Store(&v)
	f.sum = sha256.Sum256(raw)
	return nil
}
