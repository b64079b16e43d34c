package acl

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Options configure an Engine.
type Options struct {
	// File is a Mosquitto acl_file or an EMQX acl.conf; "" is no file.
	File string
	// NoMatchAllow allows what no rule decides; the default denies.
	NoMatchAllow bool
	// DryRun reports denials (Decision.DryRun) and denies nothing.
	DryRun bool
	// DenyDisconnect ends the session on a denied PUBLISH instead of
	// refusing the packet alone.
	DenyDisconnect bool
}

// Engine holds the rules in service. Reload swaps in a new file; views
// notice on their next check and drop their cached decisions.
type Engine struct {
	opts         Options
	noMatchAllow bool
	set          atomic.Pointer[RuleSet]

	mu  sync.Mutex // serialises reloads
	sum [32]byte
}

// NewEngine loads the file, if any.
func NewEngine(o Options) (*Engine, error) {
	e := &Engine{opts: o, noMatchAllow: o.NoMatchAllow}
	if o.File != "" {
		if _, err := e.Reload(true); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Rules is the number of file rules in service.
func (e *Engine) Rules() int {
	if s := e.set.Load(); s != nil {
		return s.Len()
	}
	return 0
}

// Reload reads the file again and swaps it in when it changed and parses;
// a file that does not parse keeps the rules in service. force is
// accepted for symmetry with other reloadable files: the content decides.
func (e *Engine) Reload(force bool) (bool, error) {
	if e.opts.File == "" {
		return false, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	b, err := os.ReadFile(e.opts.File)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(b)
	if bytes.Equal(sum[:], e.sum[:]) && e.set.Load() != nil {
		return false, nil
	}
	s, err := Parse(filepath.Base(e.opts.File), b)
	if err != nil {
		return false, err
	}
	e.set.Store(s)
	e.sum = sum
	return true, nil
}

// View compiles the rules for one connection.
func (e *Engine) View(c Client) *View {
	v := &View{eng: e, c: c, seed: maphash.MakeSeed()}
	if len(c.Rules) > 0 {
		source := "client rules"
		v.clr = clientRules(c.Rules, source)
	}
	v.rebuild(e.set.Load())
	return v
}

// Parse reads an ACL file, Mosquitto or EMQX syntax, chosen by content
// (an EMQX file's first rule starts with '{'), or by extension when the
// file has no rule (.conf: EMQX). name is used in error messages and rule
// sources.
func Parse(name string, b []byte) (*RuleSet, error) {
	if looksEMQX(b) {
		return parseEMQX(name, b)
	}
	return parseMosquitto(name, b)
}

func looksEMQX(b []byte) bool {
	for _, line := range bytes.Split(b, []byte("\n")) {
		t := bytes.TrimSpace(line)
		switch {
		case len(t) == 0, bytes.HasPrefix(t, []byte("%")):
			continue
		case bytes.HasPrefix(t, []byte("#")):
			continue // a Mosquitto comment; EMQX has none such
		}
		return t[0] == '{'
	}
	return false
}

// lineError names the file and line of a problem.
func lineError(name string, line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...))
}
