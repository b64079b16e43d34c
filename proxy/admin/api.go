package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/mqttgate/mqttgate/limits"
	"github.com/mqttgate/mqttgate/limits/logbudget"
	"github.com/mqttgate/mqttgate/proxy"
	"github.com/mqttgate/mqttgate/proxy/audit"
)

// API is what /api/v1 acts on. Every call needs a key of a role that may
// make it; without Keys every call is refused.
type API struct {
	Keys  *Keys
	Conns Registry
	// Bans is the same file the bans command and flapping detection
	// write; nil: the bans API answers 503.
	Bans *limits.Bans
	// BansChanged ends the live connections the bans in force match
	// (after a ban was added) and returns how many.
	BansChanged func() int
	// Reload does what SIGHUP does and says, file by file, what loaded.
	Reload func() []FileResult
	// Drain starts the drain SIGTERM starts; it returns at once.
	Drain func()
	// Status is the status document (version, uptime, settings, files).
	Status func() any
	// Backends lists the broker nodes (state, clients); DrainBackend
	// marks one draining (its clients moved off) or back in service. Nil
	// without a pool.
	Backends     func() any
	DrainBackend func(addr string, drain bool) (moved int, err error)
	// MetricsAuth asks for a viewer key on /metrics too.
	MetricsAuth bool
	Audit       *audit.Log
	// Log takes security events (refused keys), within SecurityLog's
	// budget (shared with the proxy's; a new one when nil).
	Log         zerolog.Logger
	SecurityLog *logbudget.Budget
	// UsernamesAreSecret keeps the values of user name bans out of the
	// bans list (the user names may be tokens).
	UsernamesAreSecret bool
}

// Registry is the proxy's session registry (*proxy.Server is one).
type Registry interface {
	Conns() []proxy.ConnInfo
	Conn(id uint64) (proxy.ConnInfo, bool)
	Kick(match func(*proxy.Session) bool, reason string) int
}

// FileResult is one file's answer to a reload.
type FileResult struct {
	File    string `json:"file"`
	Changed bool   `json:"changed"`
	Error   string `json:"error,omitempty"`
}

// PageSize is how many connections one page lists.
const PageSize = 100

// Refused key attempts: a source may fail this many times in a burst,
// then once every failureEvery; past that it is answered 429 without
// its key being looked at.
const (
	failureBurst = 10
	failureEvery = 6 * time.Second
	maxSources   = 10_000
)

type api struct {
	API
	mu       sync.Mutex
	failures map[netip.Prefix]*rate.Limiter
	overflow *rate.Limiter // shared by new sources while failures is full
}

func newAPI(cfg *API) *api {
	a := &api{failures: map[netip.Prefix]*rate.Limiter{}, overflow: rate.NewLimiter(rate.Every(failureEvery), failureBurst)}
	if cfg != nil {
		a.API = *cfg
	}
	if a.SecurityLog == nil {
		a.SecurityLog = logbudget.New()
	}
	return a
}

func (a *api) routes(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/status", a.need(Viewer, a.status))
	mux.Handle("GET /api/v1/connections", a.need(Viewer, a.connections))
	mux.Handle("GET /api/v1/connections/{id}", a.need(Viewer, a.connection))
	mux.Handle("POST /api/v1/connections/kick", a.need(Operator, a.kick))
	mux.Handle("GET /api/v1/bans", a.need(Viewer, a.bans))
	mux.Handle("POST /api/v1/bans", a.need(Operator, a.addBan))
	mux.Handle("DELETE /api/v1/bans/{kind}/{value}", a.need(Operator, a.removeBan))
	mux.Handle("POST /api/v1/reload", a.need(Admin, a.reload))
	mux.Handle("POST /api/v1/drain", a.need(Operator, a.drain))
	mux.Handle("GET /api/v1/backends", a.need(Viewer, a.backends))
	mux.Handle("POST /api/v1/backends/drain", a.need(Operator, a.drainBackend))
	mux.Handle("/api/", a.need(Viewer, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint or method")
	}))
}

// recorder keeps the status an answer was sent with, for the audit line.
type recorder struct {
	http.ResponseWriter
	status int
	note   string // what the call did, for the audit line
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// need serves h to keys of role need or above: 401 without a valid key
// (expired and unknown alike), 403 when the key's role may not, 429 for
// a source whose keys were refused too often (a valid key is served
// whatever its source did). Every call is audited: those refused
// before a key was accepted are sampled, since anybody can make them.
// The audit and security log name the route, never the path (a path may
// hold a user name that is a token).
func (a *api) need(need Role, h func(http.ResponseWriter, *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		src := remoteAddr(r)
		key, why := a.authorize(r, src, need)
		defer func() { a.audit(r, rec, src, key, why) }() // also when h panics
		switch why {
		case "":
			h(rec, r)
		case "throttled":
			rec.Header().Set("Retry-After", strconv.Itoa(int(failureEvery.Seconds())))
			writeError(rec, http.StatusTooManyRequests, "too many refused keys from this address")
		case "forbidden":
			writeError(rec, http.StatusForbidden, fmt.Sprintf("the %s role may not do this", key.Role))
		default:
			rec.Header().Set("WWW-Authenticate", `Bearer realm="mqttgate"`)
			writeError(rec, http.StatusUnauthorized, why)
		}
	})
}

func (a *api) audit(r *http.Request, rec *recorder, src netip.Addr, key Key, why string) {
	var ev *zerolog.Event
	if why == "" || why == "forbidden" {
		ev = a.Audit.Event("admin_api")
	} else {
		ev = a.Audit.Sampled("admin_api_refused")
	}
	if ev == nil {
		return
	}
	ev = ev.Str("route", route(r)).Str("source", src.String()).Int("status", rec.status)
	if key.Name != "" {
		ev = ev.Str("key", key.Name).Stringer("role", key.Role)
	}
	if why != "" {
		ev = ev.Str("refused", why)
	}
	if rec.note != "" {
		ev = ev.Str("result", rec.note)
	}
	ev.Send()
}

// route is the pattern a request matched ("DELETE /api/v1/bans/{kind}/{value}").
func route(r *http.Request) string {
	if r.Pattern == "" {
		return r.Method + " (none)"
	}
	if strings.HasPrefix(r.Pattern, "/") { // the catch-all and /metrics with auth: no method in the pattern
		return r.Method + " " + r.Pattern
	}
	return r.Pattern
}

func (a *api) authorize(r *http.Request, src netip.Addr, need Role) (Key, string) {
	why := "an API key is needed (Authorization: Bearer)"
	var key Key
	if secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && a.Keys != nil {
		k, err := a.Keys.Check(strings.TrimSpace(secret), time.Now())
		switch {
		case err == nil && k.Role < need:
			return k, "forbidden"
		case err == nil:
			return k, ""
		case errors.Is(err, ErrExpiredKey):
			key, why = k, "expired API key"
		default:
			why = "unknown API key"
		}
	}
	if !a.failureLimiter(src).Allow() {
		return Key{}, "throttled"
	}
	if ok, held := a.SecurityLog.Allow(src); ok {
		ev := a.Log.Warn().Str("event", "admin_key_refused").Stringer("source", src).Str("route", route(r)).Str("why", why)
		if key.Name != "" {
			ev = ev.Str("key", key.Name)
		}
		if held > 0 {
			ev = ev.Int64("suppressed", held)
		}
		ev.Msg("admin API key refused")
	}
	return key, why
}

// sourceOf is what refused keys are counted by: an IPv4 /24, an IPv6
// /64, loopback as one (a host's own clients are one source).
func sourceOf(a netip.Addr) netip.Prefix {
	switch {
	case a.IsLoopback():
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	case a.Is4():
		p, _ := a.Prefix(24)
		return p
	default:
		p, _ := a.Prefix(64)
		return p
	}
}

// failureLimiter is the refused-key budget of one source. While the table
// is full of sources still paying off their failures, new sources share
// one budget: an address sprayer cannot reset anybody's.
func (a *api) failureLimiter(src netip.Addr) *rate.Limiter {
	k := sourceOf(src)
	a.mu.Lock()
	defer a.mu.Unlock()
	if lim := a.failures[k]; lim != nil {
		return lim
	}
	if len(a.failures) >= maxSources {
		for p, l := range a.failures {
			if l.Tokens() >= failureBurst {
				delete(a.failures, p)
			}
		}
		if len(a.failures) >= maxSources {
			return a.overflow
		}
	}
	lim := rate.NewLimiter(rate.Every(failureEvery), failureBurst)
	a.failures[k] = lim
	return lim
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a
	}
	return ap.Addr().Unmap()
}

func (a *api) status(w http.ResponseWriter, _ *http.Request) {
	if a.Status == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	writeJSON(w, http.StatusOK, a.Status())
}

func (a *api) connections(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page := 1
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1<<20 {
			writeError(w, http.StatusBadRequest, "page: want a number from 1")
			return
		}
		page = n
	}
	var match []proxy.ConnInfo
	for _, c := range a.Conns.Conns() {
		if f := q.Get("clientid"); f != "" && c.ClientID != f {
			continue
		}
		if f := q.Get("username"); f != "" && c.Username != f {
			continue
		}
		if f := q.Get("listener"); f != "" && c.Listener != f {
			continue
		}
		if f := q.Get("address"); f != "" && c.Address != f && !strings.HasPrefix(c.Address, f+":") && c.Address != "["+f+"]" &&
			!strings.HasPrefix(c.Address, "["+f+"]:") {
			continue
		}
		match = append(match, c)
	}
	pages := max(1, (len(match)+PageSize-1)/PageSize)
	from := min(len(match), (page-1)*PageSize)
	writeJSON(w, http.StatusOK, map[string]any{"connections": nonNil(match[from:min(len(match), from+PageSize)]), "total": len(match),
		"page": page, "pages": pages})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (a *api) connection(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "id: want a connection number")
		return
	}
	c, ok := a.Conns.Conn(id)
	if !ok {
		writeError(w, http.StatusNotFound, "no such connection")
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// KickReason is the close reason logged for a kicked connection.
const KickReason = "kicked by an operator"

func (a *api) kick(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID       uint64 `json:"id"`
		ClientID string `json:"clientid"`
		Username string `json:"username"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	n := 0
	for _, set := range []bool{req.ID != 0, req.ClientID != "", req.Username != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		writeError(w, http.StatusBadRequest, `want exactly one of "id", "clientid" and "username"`)
		return
	}
	kicked := a.Conns.Kick(func(s *proxy.Session) bool {
		switch {
		case req.ID != 0:
			return s.ID == req.ID
		case req.ClientID != "":
			return s.ClientID == req.ClientID
		}
		return s.Username == req.Username
	}, KickReason)
	w.(*recorder).note = fmt.Sprintf("kicked %d", kicked)
	ev := a.Audit.Event("kick").Int("kicked", kicked)
	switch {
	case req.ID != 0:
		ev = ev.Uint64("conn", req.ID)
	case req.ClientID != "":
		ev = ev.Str("client_id", req.ClientID)
	default:
		ev = ev.Bool("by_username", true) // user names may be tokens: not written
	}
	ev.Send()
	writeJSON(w, http.StatusOK, map[string]int{"kicked": kicked})
}

func (a *api) bans(w http.ResponseWriter, _ *http.Request) {
	if a.Bans == nil {
		writeError(w, http.StatusServiceUnavailable, "no bans file")
		return
	}
	list := nonNil(a.Bans.List())
	if a.UsernamesAreSecret {
		for i := range list {
			if list[i].Kind == limits.BanUsername {
				list[i].Value = "(secret)"
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"bans": list})
}

func (a *api) addBan(w http.ResponseWriter, r *http.Request) {
	if a.Bans == nil {
		writeError(w, http.StatusServiceUnavailable, "no bans file")
		return
	}
	var req struct {
		Kind   string `json:"kind"`
		Value  string `json:"value"`
		User   string `json:"user"`
		For    string `json:"for"`
		Until  string `json:"until"`
		Reason string `json:"reason"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	ban := limits.Ban{Kind: req.Kind, Value: req.Value, User: req.User, Reason: req.Reason}
	switch {
	case (req.For == "") == (req.Until == ""):
		writeError(w, http.StatusBadRequest, `want one of "for" (a duration) and "until" (RFC 3339)`)
		return
	case req.For != "":
		d, err := time.ParseDuration(req.For)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, `"for": want a positive duration such as "24h"`)
			return
		}
		ban.Until = time.Now().Add(d).UTC()
	default:
		t, err := time.Parse(time.RFC3339, req.Until)
		if err != nil {
			writeError(w, http.StatusBadRequest, `"until": want an RFC 3339 time`)
			return
		}
		ban.Until = t.UTC()
	}
	if err := a.Bans.Add(ban); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	kicked := 0
	if a.BansChanged != nil {
		kicked = a.BansChanged()
	}
	w.(*recorder).note = fmt.Sprintf("banned %s, kicked %d", ban.Kind, kicked)
	writeJSON(w, http.StatusCreated, map[string]any{"ban": ban, "kicked": kicked})
}

func (a *api) removeBan(w http.ResponseWriter, r *http.Request) {
	if a.Bans == nil {
		writeError(w, http.StatusServiceUnavailable, "no bans file")
		return
	}
	found, err := a.Bans.Remove(r.PathValue("kind"), r.PathValue("value"), r.URL.Query().Get("user"))
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	case !found:
		writeError(w, http.StatusNotFound, "no such ban")
	default:
		w.(*recorder).note = "unbanned " + r.PathValue("kind")
		writeJSON(w, http.StatusOK, map[string]bool{"removed": true})
	}
}

func (a *api) reload(w http.ResponseWriter, _ *http.Request) {
	if a.Reload == nil {
		writeError(w, http.StatusServiceUnavailable, "nothing to reload")
		return
	}
	files := a.Reload()
	failed := 0
	for _, f := range files {
		if f.Error != "" {
			failed++
		}
	}
	w.(*recorder).note = fmt.Sprintf("%d files, %d failed", len(files), failed)
	writeJSON(w, http.StatusOK, map[string]any{"files": nonNil(files)})
}

func (a *api) drain(w http.ResponseWriter, _ *http.Request) {
	if a.Drain == nil {
		writeError(w, http.StatusServiceUnavailable, "drain unavailable")
		return
	}
	a.Drain()
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "draining"})
}

func (a *api) backends(w http.ResponseWriter, _ *http.Request) {
	if a.Backends == nil {
		writeError(w, http.StatusNotFound, "one broker: no pool (MQTTGATE_BACKEND lists one address)")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"backends": a.Backends()})
}

func (a *api) drainBackend(w http.ResponseWriter, r *http.Request) {
	if a.DrainBackend == nil {
		writeError(w, http.StatusNotFound, "one broker: no pool (MQTTGATE_BACKEND lists one address)")
		return
	}
	var req struct {
		Backend string `json:"backend"`
		Drain   *bool  `json:"drain"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Backend == "" || req.Drain == nil {
		writeError(w, http.StatusBadRequest, `want {"backend": "host:port", "drain": true|false}`)
		return
	}
	moved, err := a.DrainBackend(req.Backend, *req.Drain)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	w.(*recorder).note = fmt.Sprintf("backend %s drain %v, moving %d", req.Backend, *req.Drain, moved)
	writeJSON(w, http.StatusOK, map[string]any{"backend": req.Backend, "draining": *req.Drain, "moving": moved})
}

// maxBody bounds an API request's body.
const maxBody = 64 << 10

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
