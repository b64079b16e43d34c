package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// target is where clients connect: tls://host:port or tcp://host:port.
type target struct {
	addr     string
	ws       bool // MQTT over WebSocket (wss:// or ws://), at /mqtt
	tls      *tls.Config
	user     string
	password string
}

// classicGroups are the key exchanges every scenario can negotiate:
// OpenSSL 3.0 (HAProxy, Mosquitto here) has no ML-KEM, and a Go server
// would otherwise pick X25519MLKEM768 and do more work per handshake than
// the others.
var classicGroups = []tls.CurveID{tls.X25519, tls.CurveP256}

func parseTarget(raw, caFile, user, password, groups string) (*target, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("target %q: want tls://host:port or tcp://host:port", raw)
	}
	t := &target{addr: u.Host, user: user, password: password, ws: u.Scheme == "ws" || u.Scheme == "wss"}
	switch u.Scheme {
	case "tcp", "ws":
	case "tls", "wss":
		pool := x509.NewCertPool()
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, err
			}
			pool.AppendCertsFromPEM(pem)
		}
		t.tls = &tls.Config{RootCAs: pool, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4096)}
		switch groups {
		case "classic":
			t.tls.CurvePreferences = classicGroups
		case "go":
		default:
			return nil, fmt.Errorf("groups %q: classic or go", groups)
		}
	default:
		return nil, fmt.Errorf("target %q: scheme tls, tcp, wss or ws", raw)
	}
	return t, nil
}

// dialer spreads source addresses over 127.0.0.0/8 so that many
// connections do not run out of ephemeral ports.
type dialer struct {
	n int
}

func (d *dialer) dial(t *target) (net.Conn, error) {
	d.n++
	src := net.IPv4(127, byte(1+d.n/20000%200), byte(d.n%250+1), 1)
	nd := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	var c net.Conn
	var err error
	if t.tls != nil {
		c, err = tls.DialWithDialer(nd, "tcp", t.addr, t.tls)
	} else {
		c, err = nd.Dial("tcp", t.addr)
	}
	if err != nil || !t.ws {
		return c, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	wc, err := upgradeWS(c, "localhost", "/mqtt")
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return wc, nil
}

// mqttConn is one client connection.
type mqttConn struct {
	net.Conn
	r *mqttwire.Reader
}

// connect opens a connection and completes CONNECT/CONNACK (MQTT 3.1.1).
func connect(d *dialer, t *target, id string) (*mqttConn, error) {
	c, err := d.dial(t)
	if err != nil {
		return nil, err
	}
	cn := &mqttwire.Connect{Version: mqttwire.V311, CleanStart: true, ClientID: []byte(id), KeepAlive: 300}
	if t.user != "" {
		cn.UsernameFlag, cn.Username, cn.PasswordFlag, cn.Password = true, []byte(t.user), true, []byte(t.password)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(mqttwire.AppendConnect(nil, cn)); err != nil {
		c.Close()
		return nil, err
	}
	mc := &mqttConn{Conn: c, r: mqttwire.NewReader(c, 64<<10, 1<<24)}
	p, err := mc.r.Next()
	if err != nil || p.Type != mqttwire.CONNACK || len(p.Body) < 2 || p.Body[1] != 0 {
		c.Close()
		return nil, errors.Join(errors.New("connect refused"), err)
	}
	_ = c.SetDeadline(time.Time{})
	return mc, nil
}
