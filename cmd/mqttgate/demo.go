package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
)

// runDemo starts an embedded broker on loopback, throwaway certificates,
// and the proxy with TLS and mTLS in front, then prints commands to try.
func runDemo(environ map[string]string, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "mqttgate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pki, err := devpki.Init(dir, "demo-client")
	if err != nil {
		return err
	}

	aclFile := filepath.Join(dir, "acl")
	if err := os.WriteFile(aclFile, []byte("# every client may use demo/ and nothing else\npattern readwrite demo/#\n"), 0o644); err != nil {
		return err
	}

	brokerAddr, err := freeLoopback()
	if err != nil {
		return err
	}
	broker := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := broker.AddHook(new(auth.AllowHook), nil); err != nil {
		return err
	}
	if err := broker.AddListener(listeners.NewTCP(listeners.Config{ID: "demo", Address: brokerAddr})); err != nil {
		return err
	}
	if err := broker.Serve(); err != nil {
		return err
	}
	defer broker.Close()

	// The demo's own settings win over anything in the environment, except
	// the listen address and logging.
	env := map[string]string{
		"MQTTGATE_BACKEND":         brokerAddr,
		"MQTTGATE_LISTEN_TLS":      "127.0.0.1:8883",
		"MQTTGATE_TLS_CERT":        pki.ServerCert,
		"MQTTGATE_TLS_KEY":         pki.ServerKey,
		"MQTTGATE_TLS_CLIENT_CA":   pki.CA,
		"MQTTGATE_TLS_CLIENT_AUTH": "require",
		"MQTTGATE_AUTHN":           "cert",
		"MQTTGATE_CERT_IDENTITY":   "cn",
		"MQTTGATE_ACL_FILE":        aclFile,
		"MQTTGATE_LOG_FORMAT":      "console",
	}
	for _, k := range []string{"MQTTGATE_LISTEN_TLS", "MQTTGATE_LOG_LEVEL", "MQTTGATE_LOG_FORMAT"} {
		if v, ok := environ[k]; ok {
			env[k] = v
		}
	}
	c, err := loadConfig(env)
	if err != nil {
		return err
	}
	g, err := startGateway(c, newLogger(c))
	if _, set := environ["MQTTGATE_LISTEN_TLS"]; err != nil && !set {
		c.ListenTLS = "127.0.0.1:0" // 8883 is taken: any free port will do
		g, err = startGateway(c, newLogger(c))
	}
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(g.tlsLn.Addr().String())
	tlsArgs := fmt.Sprintf("-h localhost -p %s --cafile %s --cert %s --key %s",
		port, pki.CA, pki.Clients["demo-client"][0], pki.Clients["demo-client"][1])
	fmt.Fprintf(stdout, `
mqttgate demo: an embedded MQTT broker on %s, behind mqttgate on TLS port %s
with mutual TLS required; the client certificate's CN is the MQTT user name
the broker sees. Throwaway certificates are in %s and are deleted on exit.

In another terminal, subscribe:
  mosquitto_sub %s -t 'demo/#' -v

and publish:
  mosquitto_pub %s -t demo/hello -m 'hello through mqttgate'

Topics outside demo/ are refused by the ACL file (see the log):
  mosquitto_pub %s -t other/topic -q 1 -m 'denied'

Without the client certificate the proxy refuses the handshake:
  mosquitto_pub -h localhost -p %s --cafile %s -t demo/hello -m 'refused'

Press Ctrl-C to stop.
`, brokerAddr, port, dir, tlsArgs, tlsArgs, tlsArgs, port, pki.CA)
	return g.wait(c.DrainDelay, c.DrainTimeout)
}

func freeLoopback() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
