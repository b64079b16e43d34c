package main

import (
	"errors"
	"net"

	"github.com/mqttgate/mqttgate/proxy"
	"github.com/mqttgate/mqttgate/proxy/brokertls"
)

// checkBackendTLS refuses TLS-to-the-broker settings that cannot be
// meant: a file named while the TLS hop is off, half a client pair, a
// server name with a port, or no name to verify the broker by.
func (c *config) checkBackendTLS() error {
	if !c.BackendTLS {
		for _, s := range []struct{ name, value string }{{"BACKEND_TLS_CA", c.BackendTLSCA}, {"BACKEND_TLS_CERT", c.BackendTLSCert},
			{"BACKEND_TLS_KEY", c.BackendTLSKey}, {"BACKEND_TLS_SERVER_NAME", c.BackendTLSServerName}} {
			if s.value != "" {
				return bad(s.name, "set, but TLS to the broker is off: set MQTTGATE_BACKEND_TLS=true as well, or unset this")
			}
		}
		return nil
	}
	switch {
	case c.BackendTLSCert != "" && c.BackendTLSKey == "":
		return bad("BACKEND_TLS_KEY", "required with MQTTGATE_BACKEND_TLS_CERT")
	case c.BackendTLSKey != "" && c.BackendTLSCert == "":
		return bad("BACKEND_TLS_CERT", "required with MQTTGATE_BACKEND_TLS_KEY")
	}
	if _, _, err := net.SplitHostPort(c.BackendTLSServerName); err == nil {
		return bad("BACKEND_TLS_SERVER_NAME", "%q: a host name, without a port", c.BackendTLSServerName)
	}
	if c.backendServerName() == "" {
		return bad("BACKEND_TLS_SERVER_NAME", "required: MQTTGATE_BACKEND %q names no host to verify the broker's certificate by", c.Backend)
	}
	return nil
}

// backendServerName is the name the broker's certificate must hold:
// MQTTGATE_BACKEND_TLS_SERVER_NAME, or the backend's host.
func (c *config) backendServerName() string {
	if c.BackendTLSServerName != "" {
		return c.BackendTLSServerName
	}
	host, _, err := net.SplitHostPort(c.backends()[0]) // a pool: the first node's, each node its own at each dial
	if err != nil {
		return ""
	}
	return host
}

// backendTLSFiles are the variables that name brokertls's files.
var backendTLSFiles = map[brokertls.File]string{brokertls.CA: "BACKEND_TLS_CA", brokertls.Cert: "BACKEND_TLS_CERT", brokertls.Key: "BACKEND_TLS_KEY"}

// buildBackendTLS loads the TLS hop to the broker, when on, into pc and
// adds its files to those reloaded (under one name: a new CA bundle and a
// new client pair are one change of trust).
func (c *config) buildBackendTLS(pc *proxy.Config, g *gateway) error {
	if !c.BackendTLS {
		return nil
	}
	bt, err := brokertls.New(brokertls.Options{CAFile: c.BackendTLSCA, CertFile: c.BackendTLSCert, KeyFile: c.BackendTLSKey,
		ServerName: c.backendServerName()})
	if err != nil {
		var fe *brokertls.FileError
		if errors.As(err, &fe) {
			return bad(backendTLSFiles[fe.File], "%v", err)
		}
		return bad("BACKEND_TLS", "%v", err)
	}
	pc.BackendTLS, g.backendTLS = bt.Config, bt.Config
	pc.BackendTLSPerNode = len(c.backends()) > 1 && c.BackendTLSServerName == ""
	g.files = append(g.files, reloadable{"BACKEND_TLS_CA", bt.Reload, ""})
	ca := c.BackendTLSCA
	if ca == "" {
		ca = "system roots"
	}
	g.log.Info().Str("backend", c.Backend).Str("server_name", c.backendServerName()).Str("ca", ca).Bool("client_cert", c.BackendTLSCert != "").
		Msg("TLS to the broker")
	return nil
}
