package sharedfile

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lines is a file of one word per line; "bad" anywhere is a parse error.
func lines(raw []byte) ([]string, error) {
	var out []string
	for _, l := range strings.Fields(string(raw)) {
		if l == "bad" {
			return nil, errors.New("bad line")
		}
		out = append(out, l)
	}
	return out, nil
}

func add(word string) func([]string) ([]string, []byte, error) {
	return func(cur []string) ([]string, []byte, error) {
		next := append(append([]string(nil), cur...), word)
		return next, []byte(strings.Join(next, "\n") + "\n"), nil
	}
}

// Two Files on one path stand for two processes (the proxy and the CLI):
// every edit lands, none overwrites another, each sees the other's.
func TestEditsFromTwoWritersAllLand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	a, err := Open(path, lines)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(path, lines)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 40 {
		f := a
		if i%2 == 1 {
			f = b
		}
		wg.Go(func() {
			if err := f.Edit(add(strconv.Itoa(i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := a.Reload(false); err != nil {
		t.Fatal(err)
	}
	if got := len(a.Load()); got != 40 {
		t.Fatalf("%d of 40 edits in the file: %v", got, a.Load())
	}
}

// A bad file keeps the value in force, on reload and on edit, and an
// edit never overwrites a file it could not read.
func TestBadFileKeepsTheValueInForce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := Open(path, lines)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Edit(add("one")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("one\nbad\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := f.Reload(false); err == nil || changed || !strings.Contains(err.Error(), path) {
		t.Fatalf("reload of a bad file: changed %v, error %v (want one naming the file)", changed, err)
	}
	if err := f.Edit(add("two")); err == nil {
		t.Fatal("an edit overwrote a file it could not read")
	}
	if raw, _ := os.ReadFile(path); string(raw) != "one\nbad\n" {
		t.Fatalf("file is now %q", raw)
	}
	if got := f.Load(); len(got) != 1 || got[0] != "one" {
		t.Fatalf("in force: %v", got)
	}
	if _, err := Open(path, lines); err == nil {
		t.Fatal("a bad file opened")
	}
}

// An error from the change leaves file and value as they were; a
// missing file is the empty value; path "" lives in memory.
func TestFailedChangeAndMemoryOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := Open(path, lines)
	if err != nil || len(f.Load()) != 0 {
		t.Fatalf("missing file: %v, %v", f.Load(), err)
	}
	boom := errors.New("boom")
	if err := f.Edit(func([]string) ([]string, []byte, error) { return []string{"x"}, []byte("x\n"), boom }); !errors.Is(err, boom) {
		t.Fatalf("edit: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) || len(f.Load()) != 0 {
		t.Fatalf("a failed change wrote the file (%v) or changed the value (%v)", err, f.Load())
	}
	m, err := Open("", lines)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Edit(add("a")); err != nil || len(m.Load()) != 1 {
		t.Fatalf("in memory: %v, %v", m.Load(), err)
	}
	if changed, err := m.Reload(false); changed || err != nil {
		t.Fatalf("in-memory reload: %v, %v", changed, err)
	}
}

// A file that must exist: missing at start is an error, missing later
// keeps the value in force. A poll reads a file only when it looks
// changed (size, time, another file); force reads it whatever it looks.
func TestExistingFileAndPolls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if _, err := OpenExisting(path, lines); err == nil {
		t.Fatal("a missing file that must exist opened")
	}
	if err := os.WriteFile(path, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parsed := 0
	counting := func(raw []byte) ([]string, error) { parsed++; return lines(raw) }
	f, err := OpenExisting(path, counting)
	if err != nil || parsed != 1 {
		t.Fatalf("open: %v, %d parses", err, parsed)
	}
	st, _ := os.Stat(path)
	// The same size and time, other bytes: a poll does not see it.
	if err := os.WriteFile(path, []byte("two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(path, st.ModTime(), st.ModTime())
	if changed, err := f.Reload(false); changed || err != nil || parsed != 1 {
		t.Fatalf("a poll of a file that looks unchanged: changed %v, %v, %d parses", changed, err, parsed)
	}
	if changed, err := f.Reload(true); !changed || err != nil || f.Load()[0] != "two" {
		t.Fatalf("a forced reload: changed %v, %v, %v", changed, err, f.Load())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Reload(false); err == nil || f.Load()[0] != "two" {
		t.Fatalf("a removed file that must exist: %v, in force %v", err, f.Load())
	}
}
