package authn

import (
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// watched is a file parsed into T and kept in service through reloads: a
// new version replaces the old only when it parses, so a broken edit
// leaves the old one in use.
type watched[T any] struct {
	path  string
	parse func([]byte) (T, error)
	cur   atomic.Pointer[T]

	mu    sync.Mutex // serialises reloads
	sum   [32]byte
	mtime time.Time
	size  int64
}

func newWatched[T any](path string, parse func([]byte) (T, error)) (*watched[T], error) {
	w := &watched[T]{path: path, parse: parse}
	if _, err := w.reload(true); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *watched[T]) load() *T { return w.cur.Load() }

// reload reads the file again when force is set or its size or time
// changed, and swaps in the new version when it differs and parses. It
// reports whether the version in service changed.
func (w *watched[T]) reload(force bool) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st, err := os.Stat(w.path)
	if err != nil {
		return false, err
	}
	if !force && st.ModTime().Equal(w.mtime) && st.Size() == w.size {
		return false, nil
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		return false, err
	}
	w.mtime, w.size = st.ModTime(), st.Size()
	sum := sha256.Sum256(b)
	if sum == w.sum && w.cur.Load() != nil {
		return false, nil
	}
	v, err := w.parse(b)
	if err != nil {
		return false, fmt.Errorf("%s: %w", w.path, err)
	}
	w.cur.Store(&v)
	w.sum = sum
	return true, nil
}
