package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
	"github.com/mqttgate/mqttgate/proxy/certstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startMosquitto(t testing.TB) string { return mqtttest.Mosquitto(t, "") }

func freeAddr(t testing.TB) string { return mqtttest.FreeAddr(t) }

// tcpLoopback returns both ends of a loopback TCP connection, closed with
// the test, with a 10 s deadline so that a broken read or write fails the
// test instead of hanging it.
func tcpLoopback(t *testing.T) (accepted, dialed net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if dialed, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if accepted, err = ln.Accept(); err != nil {
		dialed.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { accepted.Close(); dialed.Close() })
	deadline := time.Now().Add(10 * time.Second)
	_ = accepted.SetDeadline(deadline)
	_ = dialed.SetDeadline(deadline)
	return accepted, dialed
}

type pki struct {
	*devpki.Files
	store *certstore.Store
}

// newPKI writes a dev PKI with clients "alice" and "bob".
func newPKI(t testing.TB, auth certstore.ClientAuth) *pki {
	t.Helper()
	f, err := devpki.Init(t.TempDir(), "alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	store, err := certstore.New(certstore.Options{Pairs: []certstore.CertPair{{CertFile: f.ServerCert, KeyFile: f.ServerKey}}, ClientCAFile: f.CA, ClientAuth: auth})
	if err != nil {
		t.Fatal(err)
	}
	return &pki{Files: f, store: store}
}

func (p *pki) clientTLS(t testing.TB, who string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(p.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if who != "" {
		c, err := tls.LoadX509KeyPair(p.Clients[who][0], p.Clients[who][1])
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

type running struct {
	srv  *Server
	addr string
	logs *mqtttest.SyncBuffer
}

// startProxy serves cfg on a loopback port; tlsCfg nil means plaintext.
func startProxy(t testing.TB, cfg Config, tlsCfg *tls.Config) *running {
	t.Helper()
	return serveProxy(t, cfg, func(srv *Server, ln net.Listener) error { return srv.Serve(ln, tlsCfg) })
}

// serveProxy runs serve (one of the Server's Serve methods) on a loopback
// listener, with the test's defaults, until the test ends.
func serveProxy(t testing.TB, cfg Config, serve func(*Server, net.Listener) error) *running {
	t.Helper()
	logs := &mqtttest.SyncBuffer{}
	cfg.Logger = zerolog.New(logs)
	if cfg.Authenticator == nil {
		cfg.Authenticator = admitAll{}
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 200 * time.Millisecond // the cleanup's drain spreads its disconnects over this
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = serve(srv, ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})
	return &running{srv: srv, addr: ln.Addr().String(), logs: logs}
}

// mqttClient is a paho.golang client whose received messages arrive on Msgs.
type mqttClient struct {
	*paho.Client
	Msgs        chan *paho.Publish
	Disconnects chan *paho.Disconnect
}

func dialMQTT(t testing.TB, addr string, tlsCfg *tls.Config, clientID string) *mqttClient {
	t.Helper()
	var conn net.Conn
	var err error
	if tlsCfg != nil {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tlsCfg)
	} else {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	mc := &mqttClient{Msgs: make(chan *paho.Publish, 100), Disconnects: make(chan *paho.Disconnect, 1)}
	mc.Client = paho.NewClient(paho.ClientConfig{
		ClientID: clientID,
		Conn:     packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			mc.Msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { mc.Disconnects <- d },
		OnClientError:      func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := mc.Connect(ctx, &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true})
	if err != nil {
		t.Fatalf("connect %s: %v (connack %+v)", clientID, err, ca)
	}
	t.Cleanup(func() {
		_ = mc.Disconnect(&paho.Disconnect{ReasonCode: 0})
		select {
		case <-mc.Done():
		case <-time.After(5 * time.Second):
		}
	})
	return mc
}

func ctx10(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// expectMsg waits for one message on topic with payload.
func expectMsg(t testing.TB, c *mqttClient, topic, payload string) {
	t.Helper()
	select {
	case m := <-c.Msgs:
		if m.Topic != topic || string(m.Payload) != payload {
			t.Fatalf("got %s %q, want %s %q", m.Topic, m.Payload, topic, payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no message on %s", topic)
	}
}

// scriptedBroker and acceptLoop are the shared kit's (mqtttest).
var (
	scriptedBroker = mqtttest.ScriptedBroker
	acceptLoop     = mqtttest.Serve
)

// admitAll is the tests' authenticator where authentication is not the point.
type admitAll struct{}

func (admitAll) Authenticate(context.Context, *mqttwire.Connect, identity.Peer) Admission {
	return Admission{Admit: true}
}
