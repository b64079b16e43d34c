package main

import (
	"net"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/limits/cidr"
	"github.com/mqttgate/mqttgate/proxy/wstransport"
)

// tlsListener is the first listener that serves TLS with the certificate
// store ("" when none does).
func (c *config) tlsListener() string {
	if c.ListenTLS != "" {
		return c.ListenTLS
	}
	return c.ListenWSS
}

// checkWebSocket checks the WebSocket settings and builds the upgrader
// both WebSocket listeners share.
func (c *config) checkWebSocket() error {
	if c.ListenWSS == "" && c.ListenWS == "" {
		switch {
		case len(c.WSOrigins) > 0:
			return bad("WS_ORIGINS", "set, but no WebSocket listener (MQTTGATE_LISTEN_WSS, MQTTGATE_LISTEN_WS)")
		case c.WSTokenCookie != "":
			return bad("WS_TOKEN_COOKIE", "set, but no WebSocket listener (MQTTGATE_LISTEN_WSS, MQTTGATE_LISTEN_WS)")
		case c.WSTrusted != "":
			return bad("WS_TRUSTED_PROXIES", "set, but no WebSocket listener (MQTTGATE_LISTEN_WSS, MQTTGATE_LISTEN_WS)")
		}
		return nil
	}
	forwarders, err := cidr.ParseList(c.WSTrusted)
	if err != nil {
		return bad("WS_TRUSTED_PROXIES", "%v", err)
	}
	if c.WSTokenCookie != "" && len(c.WSOrigins) == 0 {
		// A cookie goes with every request the browser makes, from any
		// page: without listed Origins nobody could use it anyway (a
		// request with an Origin is refused), so the setting is a mistake.
		return bad("WS_TOKEN_COOKIE", "a token cookie needs MQTTGATE_WS_ORIGINS: the browser pages allowed to use it")
	}
	up, err := wstransport.New(wstransport.Options{Path: c.WSPath, Origins: c.WSOrigins, Trusted: forwarders,
		TokenCookie: c.WSTokenCookie, MaxFrame: int64(c.MaxPacketSize) + 5})
	if err != nil {
		if len(c.WSOrigins) > 0 {
			return bad("WS_ORIGINS", "%v", err)
		}
		return bad("WS_PATH", "%v", err)
	}
	c.parsed.upgrader = up
	return nil
}

// wsListeners are the WebSocket listeners, bound.
type wsListeners struct {
	wss, ws net.Listener
	up      *wstransport.Upgrader
}

// webSocketListeners binds the WebSocket listeners the settings name.
func (c *config) webSocketListeners(listen func(addr, name string) (net.Listener, error)) (w wsListeners, err error) {
	w.up = c.parsed.upgrader
	if c.ListenWSS != "" {
		if w.wss, err = listen(c.ListenWSS, "LISTEN_WSS"); err != nil {
			return w, err
		}
	}
	if c.ListenWS != "" {
		if w.ws, err = listen(c.ListenWS, "LISTEN_WS"); err != nil {
			return w, err
		}
	}
	return w, nil
}

func (w wsListeners) serve(g *gateway, log zerolog.Logger) {
	srv := g.srv
	if w.wss != nil {
		log.Info().Str("listen", w.wss.Addr().String()).Msg("MQTT over WebSocket (TLS) listener ready")
		go func() { g.errc <- srv.ServeWebSocket(w.wss, g.store.ServerConfig(), w.up) }()
	}
	if w.ws != nil {
		log.Warn().Str("listen", w.ws.Addr().String()).Msg("plaintext MQTT over WebSocket listener enabled")
		go func() { g.errc <- srv.ServeWebSocket(w.ws, nil, w.up) }()
	}
}
