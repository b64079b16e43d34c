package wstransport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/gobwas/ws"

	"github.com/mqttgate/mqttgate/limits/cidr"
)

// Subprotocols are the WebSocket subprotocols MQTT clients ask for: "mqtt"
// (3.1.1 and 5.0) and "mqttv3.1".
var Subprotocols = []string{"mqtt", "mqttv3.1"}

// Options configure an Upgrader.
type Options struct {
	// Path is the request path served ("/mqtt"); any other gets 404.
	Path string
	// Origins are the browser Origins allowed (see parseOrigin). A request
	// with an Origin header not listed gets 403 before the upgrade; one
	// without Origin (not a browser) is allowed. None listed: no browser.
	Origins []string
	// Trusted are the peers (HTTP balancers) whose X-Forwarded-For and
	// Forwarded headers name the client; anybody else's are ignored.
	Trusted []netip.Prefix
	// TokenCookie names a cookie that carries a bearer token (a JWT) for
	// browsers that cannot set a password; "" takes no cookie.
	TokenCookie string
	// MaxRequest bounds the upgrade request's bytes (default 16 KiB).
	MaxRequest int
	// MaxFrame bounds a data frame's payload (default 1 MiB + 5: one
	// largest packet with its fixed header).
	MaxFrame int64
}

// Upgrader answers WebSocket upgrades for MQTT.
type Upgrader struct {
	o       Options
	origins []origin
}

// Forwards reports whether peer is a trusted HTTP balancer, whose
// forwarding headers name the client.
func (u *Upgrader) Forwards(peer netip.Addr) bool { return cidr.Contains(u.o.Trusted, peer) }

// New checks o.
func New(o Options) (*Upgrader, error) {
	if o.Path == "" {
		o.Path = "/mqtt"
	}
	if !strings.HasPrefix(o.Path, "/") || strings.ContainsAny(o.Path, "?# ") {
		return nil, fmt.Errorf("path %q: want an absolute path such as /mqtt", o.Path)
	}
	if o.MaxRequest <= 0 {
		o.MaxRequest = 16 << 10
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = 1<<20 + 5
	}
	u := &Upgrader{o: o}
	for _, s := range o.Origins {
		or, err := parseOrigin(s)
		if err != nil {
			return nil, err
		}
		u.origins = append(u.origins, or)
	}
	return u, nil
}

// ErrRefused wraps every refusal: the client was answered with an HTTP
// error and no upgrade.
var ErrRefused = errors.New("websocket upgrade refused")

// upgraded is what an upgrade learns beyond the byte stream.
type upgraded struct {
	Client   netip.AddrPort
	Token    string
	Protocol string
}

// Upgrade reads the upgrade request from conn (the caller sets its
// deadline) and answers it; peer is the connection's source, which may
// be a trusted balancer. admit judges a forwarded client address before
// the 101 (access rules). It returns the connection MQTT packets travel
// in, the client's address when a trusted balancer named it (zero
// otherwise), and the bearer token of the Authorization header or the
// token cookie ("" when none).
func (u *Upgrader) Upgrade(conn net.Conn, peer netip.AddrPort, admit func(netip.AddrPort) bool) (stream net.Conn, client netip.AddrPort, token string, err error) {
	var (
		up               upgraded
		originSeen       string
		hasOrigin, proto bool
		forwarded        []byte // X-Forwarded-For or Forwarded, the last seen
		forwardedKind    string
		cookie           string
	)
	trusted := u.Forwards(peer.Addr())
	lr := &headReader{r: conn, max: u.o.MaxRequest}
	upgrader := ws.Upgrader{
		ReadBufferSize: 4096, WriteBufferSize: 512,
		Protocol: func(p []byte) bool {
			for _, s := range Subprotocols {
				if string(p) == s {
					up.Protocol, proto = s, true
					return true
				}
			}
			return false
		},
		OnRequest: func(uri []byte) error {
			path, _, _ := bytes.Cut(uri, []byte("?"))
			if string(path) != u.o.Path {
				return reject(http.StatusNotFound, "no MQTT endpoint here")
			}
			return nil
		},
		OnHeader: func(key, value []byte) error {
			switch http.CanonicalHeaderKey(string(key)) {
			case "Origin":
				hasOrigin, originSeen = true, string(value)
			case "X-Forwarded-For", "Forwarded":
				if trusted {
					// One header naming the client: two (of either kind)
					// leave it to the order, which the client may set.
					if forwardedKind != "" {
						return reject(http.StatusBadRequest, "more than one X-Forwarded-For or Forwarded header")
					}
					forwarded, forwardedKind = append(forwarded[:0], value...), http.CanonicalHeaderKey(string(key))
				}
			case "Authorization":
				if t, ok := strings.CutPrefix(string(value), "Bearer "); ok {
					up.Token = strings.TrimSpace(t)
				}
			case "Cookie":
				if u.o.TokenCookie != "" {
					cookie = string(value)
				}
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if hasOrigin && !u.originAllowed(originSeen) {
				return nil, reject(http.StatusForbidden, "origin not allowed")
			}
			if !proto {
				return nil, reject(http.StatusBadRequest, "the mqtt subprotocol is required (Sec-WebSocket-Protocol: mqtt)")
			}
			if len(forwarded) > 0 {
				a, ok := forwardedClient(forwardedKind, string(forwarded))
				if !ok {
					return nil, reject(http.StatusBadRequest, "unreadable "+forwardedKind)
				}
				if !admit(a) {
					return nil, reject(http.StatusForbidden, "client address not allowed")
				}
				up.Client = a
			}
			return ws.HandshakeHeaderString(""), nil
		},
	}
	if _, err = upgrader.Upgrade(struct {
		io.Reader
		io.Writer
	}{lr, conn}); err != nil {
		if lr.over {
			_, _ = io.WriteString(conn, "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			return nil, client, "", fmt.Errorf("%w: request over %d bytes", ErrRefused, u.o.MaxRequest)
		}
		return nil, client, "", fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if up.Token == "" && cookie != "" {
		up.Token = cookieValue(cookie, u.o.TokenCookie)
	}
	if rest := lr.rest(); len(rest) > 0 {
		// Frames sent right behind the request, in the same read.
		conn = &prefixed{Conn: conn, pre: rest}
	}
	return NewConn(conn, u.o.MaxFrame), up.Client, up.Token, nil
}

func reject(code int, reason string) error {
	return ws.RejectConnectionError(ws.RejectionStatus(code), ws.RejectionReason(reason))
}

func (u *Upgrader) originAllowed(v string) bool {
	for _, o := range u.origins {
		if o.allows(v) {
			return true
		}
	}
	return false
}

// forwardedClient reads the client a trusted balancer names: the last
// entry of X-Forwarded-For (the one it appended), or the for= of the last
// element of Forwarded (RFC 7239). Without a port, port 0.
func forwardedClient(kind, v string) (netip.AddrPort, bool) {
	if kind == "X-Forwarded-For" {
		parts := strings.Split(v, ",")
		return parseHost(strings.TrimSpace(parts[len(parts)-1]))
	}
	elems := strings.Split(v, ",")
	for _, pair := range strings.Split(elems[len(elems)-1], ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && strings.EqualFold(k, "for") {
			return parseHost(strings.Trim(val, `"`))
		}
	}
	return netip.AddrPort{}, false
}

func parseHost(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Addr().Zone() != "" { // a zone makes an address no rule or ban matches
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), 0), true
}

// cookieValue finds the cookie name in a Cookie header.
func cookieValue(header, name string) string {
	for _, c := range (&http.Request{Header: http.Header{"Cookie": {header}}}).Cookies() {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// headReader gives the upgrade the request's head and nothing past it
// (the blank line), at most max bytes: what a client sends right behind
// the request (its first frames) stays for the stream.
type headReader struct {
	r    io.Reader
	max  int
	buf  []byte
	n    int  // bytes of buf given out
	done bool // the blank line was given out
	over bool // the head was longer than max
}

func (h *headReader) Read(p []byte) (int, error) {
	if h.done {
		return 0, io.EOF
	}
	if h.n == len(h.buf) {
		if len(h.buf) >= h.max {
			h.over = true
			return 0, io.ErrUnexpectedEOF
		}
		if len(h.buf) == cap(h.buf) { // grow by doubling, up to max: a dribbled head costs its size
			h.buf = slices.Grow(h.buf, min(max(cap(h.buf), 1024), h.max-len(h.buf)))
		}
		m, err := h.r.Read(h.buf[len(h.buf):min(cap(h.buf), h.max)])
		h.buf = h.buf[:len(h.buf)+m]
		if m == 0 {
			return 0, err
		}
	}
	avail := h.buf[h.n:]
	// Up to the end of the head: the first "\r\n\r\n" in what has come.
	if i := bytes.Index(h.buf[max(0, h.n-3):], []byte("\r\n\r\n")); i >= 0 {
		end := max(0, h.n-3) + i + 4
		if end <= len(h.buf) {
			avail = h.buf[h.n:end]
			if end <= h.n+len(p) {
				h.done = true
			}
		}
	}
	m := copy(p, avail)
	h.n += m
	return m, nil
}

// rest is what came behind the head.
func (h *headReader) rest() []byte {
	if !h.done {
		return nil
	}
	return h.buf[h.n:]
}

// prefixed reads pre before the connection.
type prefixed struct {
	net.Conn
	pre []byte
}

func (p *prefixed) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
