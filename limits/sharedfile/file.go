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
	path     string
	parse    func([]byte) (T, error)
	required bool // a missing file is an error, not parse(nil)
	cur      atomic.Pointer[T]
	mu       sync.Mutex  // serialises reloads and edits in this process; the lock file, across processes
	sum      [32]byte    // of the bytes in force
	seen     os.FileInfo // the file as last read: unchanged, a poll reads nothing
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
	if _, err := f.Reload(true); err != nil {
		return nil, err
	}
	return f, nil
}

// OpenExisting is Open for a file that must exist: missing, at start or
// on a reload, is an error (and on a reload the value in force stays).
func OpenExisting[T any](path string, parse func([]byte) (T, error)) (*File[T], error) {
	f := &File[T]{path: path, parse: parse, required: true}
	if _, err := f.Reload(true); err != nil {
		return nil, err
	}
	return f, nil
}

// Load returns the value in force.
func (f *File[T]) Load() T { return *f.cur.Load() }

// Reload reads the file again when force is set or it looks changed
// (another file, another size or modification time: a poll of a large
// file that did not change reads nothing); it reports whether the value
// in force changed.
func (f *File[T]) Reload(force bool) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloadLocked(force)
}

func (f *File[T]) reloadLocked(force bool) (bool, error) {
	if f.path == "" {
		return false, nil
	}
	st, err := os.Stat(f.path)
	switch {
	case errors.Is(err, os.ErrNotExist) && !f.required:
		st, err = nil, nil
	case err != nil:
		return false, err
	}
	if !force && unchanged(f.seen, st) {
		return false, nil
	}
	var raw []byte
	if st != nil {
		if raw, err = os.ReadFile(f.path); err != nil {
			return false, err
		}
	}
	f.seen = st
	sum := sha256.Sum256(raw)
	if sum == f.sum && f.cur.Load() != nil {
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
	if _, err := f.reloadLocked(true); err != nil {
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
	f.seen, _ = os.Stat(f.path)
	return nil
}

// unchanged reports whether the file looks as it did when last read:
// the same file (a rename replaces it), size and modification time.
func unchanged(before, now os.FileInfo) bool {
	if before == nil || now == nil {
		return before == nil && now == nil
	}
	return os.SameFile(before, now) && before.Size() == now.Size() && before.ModTime().Equal(now.ModTime())
}
