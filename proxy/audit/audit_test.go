package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func lines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Event("first").Str("k", "v").Send()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Event("second").Send() // buffered: still the old file's until the reopen flushes it
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Event("third").Send()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	old, cur := lines(t, path+".1"), lines(t, path)
	if len(old) != 2 || old[0]["event"] != "first" || old[0]["k"] != "v" || old[1]["event"] != "second" {
		t.Fatalf("rotated file: %v", old)
	}
	if len(cur) != 1 || cur[0]["event"] != "third" || cur[0]["time"] == nil {
		t.Fatalf("new file: %v", cur)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
}

// A flood of sampled facts writes a bounded number of lines, and the
// lines with the held-back counts add up to every fact.
func TestSampledCountsStayExact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for range n / 2 {
		l.Sampled("acl_deny").Send()
	}
	_ = l.Flush() // a summary line for what was held back so far
	for range n / 2 {
		l.Sampled("acl_deny").Send()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var written, total int
	for _, m := range lines(t, path) {
		switch m["event"] {
		case "acl_deny":
			written++
			total++
			if h, ok := m["held_back"].(float64); ok {
				total += int(h)
			}
		case "acl_deny_held_back":
			total += int(m["count"].(float64))
		default:
			t.Fatalf("line %v", m)
		}
	}
	if total != n || written > 2*SampleBurst+10 {
		t.Fatalf("%d lines for %d facts, counting %d", written, n, total)
	}
}

func TestNilLogRecordsNothing(t *testing.T) {
	var l *Log
	l.Event("x").Str("a", "b").Send()
	l.Sampled("y").Send()
	if l.Reopen() != nil || l.Flush() != nil || l.Close() != nil {
		t.Fatal("a nil log failed")
	}
}
