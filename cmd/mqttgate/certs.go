package main

import (
	"fmt"
	"io"

	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
)

// certsInit writes a development PKI for trying TLS and mTLS by hand.
func certsInit(dir string, stdout io.Writer) error {
	f, err := devpki.Init(dir, "client1", "client2", "client3")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote a development PKI to %s (not for production: keys are unencrypted)\n", dir)
	fmt.Fprintf(stdout, "  CA (trust anchor):   %s\n", f.CA)
	fmt.Fprintf(stdout, "  server (localhost, 127.0.0.1, ::1, chain included): %s, %s\n", f.ServerCert, f.ServerKey)
	for _, cn := range []string{"client1", "client2", "client3"} {
		fmt.Fprintf(stdout, "  client %s: %s, %s\n", cn, f.Clients[cn][0], f.Clients[cn][1])
	}
	fmt.Fprintf(stdout, "\nMQTTGATE_TLS_CERT=%s MQTTGATE_TLS_KEY=%s MQTTGATE_TLS_CLIENT_CA=%s MQTTGATE_TLS_CLIENT_AUTH=require mqttgate\n",
		f.ServerCert, f.ServerKey, f.CA)
	return nil
}
