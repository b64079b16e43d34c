package audit

import (
	"bufio"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// FlushEvery bounds what a crash can lose: lines are buffered and
// written out at least this often.
const FlushEvery = time.Second

// Sampled events (ACL denials under a flood) are written at most this
// many a second, in bursts of SampleBurst; the others are counted, and
// the count is written with the next one or in a summary line at the next
// flush, so the total stays exact.
const (
	SampleRate  = 50
	SampleBurst = 100
)

// Log is the audit trail in one file. A nil *Log records nothing. It is
// safe for concurrent use.
type Log struct {
	path string
	zl   zerolog.Logger

	mu     sync.Mutex
	f      *os.File
	w      *bufio.Writer
	err    error // the last write error, reported by Close
	closed bool

	mu2        sync.Mutex               // guards sample and held
	sample     map[string]*rate.Limiter // by kind: one flood does not starve another kind's lines
	held       map[string]int64
	heldAny    atomic.Bool
	stop, done chan struct{}
}

// Open opens (creating, 0600) the file for appending and starts the
// flusher; Close stops it.
func Open(path string) (*Log, error) {
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	l := &Log{path: path, f: f, w: bufio.NewWriterSize(f, 64<<10), sample: map[string]*rate.Limiter{},
		held: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	l.zl = zerolog.New(l).With().Timestamp().Logger()
	go l.flushLoop()
	return l, nil
}

func openFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}

// Write takes one line from zerolog.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	n, err := l.w.Write(p)
	if err != nil {
		l.err = err
	}
	return n, err
}

// Event starts the line of one fact of kind ("auth_refused", "ban_added"
// ...); finish it with Send. Nil on a nil Log (zerolog then does
// nothing).
func (l *Log) Event(kind string) *zerolog.Event {
	if l == nil {
		return nil
	}
	return l.zl.Log().Str("event", kind)
}

// Sampled is Event for facts that can come in floods (ACL denials,
// refused admin calls): past SampleRate a second of that kind it returns nil and counts the fact as held back;
// the count is written as "held_back" with the next line of that kind
// written, or in a "<kind>_held_back" summary at the next flush.
func (l *Log) Sampled(kind string) *zerolog.Event {
	if l == nil {
		return nil
	}
	l.mu2.Lock()
	lim := l.sample[kind]
	if lim == nil {
		lim = rate.NewLimiter(SampleRate, SampleBurst)
		l.sample[kind] = lim // kinds are the code's constants: a few
	}
	if !lim.Allow() {
		l.held[kind]++
		l.mu2.Unlock()
		l.heldAny.Store(true)
		return nil
	}
	l.mu2.Unlock()
	ev := l.zl.Log().Str("event", kind)
	if l.heldAny.Load() {
		l.mu2.Lock()
		if n := l.held[kind]; n > 0 {
			ev = ev.Int64("held_back", n)
			delete(l.held, kind)
		}
		l.mu2.Unlock()
	}
	return ev
}

// Reopen closes the file and opens the path again (after logrotate
// renamed it: SIGUSR1). On failure the old file stays in use.
func (l *Log) Reopen() error {
	if l == nil {
		return nil
	}
	f, err := openFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		f.Close()
		return nil
	}
	if err := l.w.Flush(); err != nil {
		l.err = err
	}
	old := l.f
	l.f = f
	l.w.Reset(f)
	return old.Close()
}

// Flush writes out what is buffered, the held-back counts first.
func (l *Log) Flush() error {
	if l == nil {
		return nil
	}
	l.summarise()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	if err := l.w.Flush(); err != nil {
		l.err = err
		return err
	}
	return nil
}

// summarise writes a line per kind of the sampled facts held back since
// the last line of that kind.
func (l *Log) summarise() {
	if !l.heldAny.Swap(false) {
		return
	}
	l.mu2.Lock()
	held := l.held
	l.held = map[string]int64{}
	l.mu2.Unlock()
	for kind, n := range held {
		l.zl.Log().Str("event", kind+"_held_back").Int64("count", n).Send()
	}
}

func (l *Log) flushLoop() {
	defer close(l.done)
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			_ = l.Flush()
		}
	}
}

// Close stops the flusher, writes out what is buffered and closes the
// file; it returns the first write error seen, if any.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	close(l.stop)
	<-l.done
	_ = l.Flush()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	err := l.f.Close()
	if l.err != nil {
		return l.err
	}
	return err
}
