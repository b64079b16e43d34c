package main

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/limits"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/proxy"
)

func (c *config) checkLimits() error {
	for name, n := range map[string]int{"MAX_TOPIC_LENGTH": c.MaxTopicLength, "MAX_TOPIC_LEVELS": c.MaxTopicLevels,
		"MAX_CLIENT_ID_LENGTH": c.MaxClientIDLength, "MAX_SUBSCRIPTIONS": c.MaxSubscriptions,
		"MAX_FILTERS_PER_SUBSCRIBE": c.MaxFiltersPerSubscribe, "MAX_INFLIGHT": c.MaxInflight,
		"MAX_CONNECTIONS": c.MaxConnections, "MAX_CONNECTIONS_PER_IP": c.MaxConnectionsPerIP, "FLAPPING_MAX_DISCONNECTS": c.FlappingMax} {
		if n < 0 {
			return bad(name, "%d: must not be negative (0 turns the limit off)", n)
		}
	}
	if c.MaxTopicLength > 65535 {
		return bad("MAX_TOPIC_LENGTH", "%d: at most 65535", c.MaxTopicLength)
	}
	if c.MaxInflight > 65535 {
		return bad("MAX_INFLIGHT", "%d: at most 65535", c.MaxInflight)
	}
	for name, r := range map[string]float64{"PUBLISH_RATE": c.PublishRate, "PUBLISH_BYTES_RATE": c.PublishBytesRate,
		"CONNECT_RATE": c.ConnectRate, "CONNECT_RATE_PER_IP": c.ConnectRatePerIP} {
		if r < 0 {
			return bad(name, "%v: must not be negative (0 turns the limit off)", r)
		}
	}
	if c.RateAction != "throttle" && c.RateAction != "disconnect" {
		return bad("RATE_ACTION", "%q: want throttle or disconnect", c.RateAction)
	}
	if c.MaxKeepAlive < 0 || c.MaxKeepAlive > 65535*time.Second || c.MaxKeepAlive%time.Second != 0 {
		return bad("MAX_KEEPALIVE", "%v: whole seconds, at most 65535s", c.MaxKeepAlive)
	}
	if c.FlappingMax > 0 && (c.FlappingWindow <= 0 || c.FlappingBan <= 0) {
		return bad("FLAPPING_WINDOW", "MQTTGATE_FLAPPING_WINDOW and MQTTGATE_FLAPPING_BAN must be positive")
	}
	return nil
}

// buildLimits sets the proxy's connection gate, CONNECT checks, session
// limits and flapping detection.
func (c *config) buildLimits(pc *proxy.Config, log zerolog.Logger) (*limits.Bans, error) {
	bans, err := limits.OpenBans(c.BansFile)
	if err != nil {
		return nil, bad("BANS_FILE", "%v", err)
	}
	pl := &limits.PacketLimits{MaxTopicLength: c.MaxTopicLength, MaxTopicLevels: c.MaxTopicLevels,
		MaxClientIDLength: c.MaxClientIDLength, MaxSubscriptions: c.MaxSubscriptions, MaxFiltersPerSubscribe: c.MaxFiltersPerSubscribe,
		MaxInflight: c.MaxInflight, PublishRate: c.PublishRate, PublishBytesRate: c.PublishBytesRate,
		RateDisconnect: c.RateAction == "disconnect", MaxKeepAlive: c.MaxKeepAlive}
	pc.Conns = limits.NewConns(limits.ConnLimits{MaxTotal: c.MaxConnections, MaxPerIP: c.MaxConnectionsPerIP,
		Rate: c.ConnectRate, RatePerIP: c.ConnectRatePerIP}, bans)
	sessions := limits.NewSessions(*pl)
	pc.Limits = func(s *proxy.Session, cn *mqttwire.Connect) proxy.Limiter {
		return sessions.Open(sessionStart(s, cn), time.Now())
	}
	connects := &limits.Connects{Bans: bans, Limits: pl, Log: log, IdentityIsSecret: c.usernameIsSecret()}
	if c.FlappingMax > 0 {
		connects.Flapping = &limits.Flapping{Max: c.FlappingMax, Window: c.FlappingWindow, Ban: c.FlappingBan}
	}
	pc.Connects = connects
	return bans, nil
}

// sessionStart is what the limits need of an admitted CONNECT.
func sessionStart(s *proxy.Session, c *mqttwire.Connect) limits.Start {
	st := limits.Start{ClientID: string(c.ClientID), Who: limits.IdentityKey(s.Identity, s.ClientAddr.Addr()), CleanStart: c.CleanStart}
	if c.Version != mqttwire.V5 {
		st.Persists = !c.CleanStart // until a clean start
		return st
	}
	if n, _, ok := c.Properties.Lookup(mqttwire.PropSessionExpiry); ok && n > 0 {
		st.Persists = true
		if n != 0xFFFFFFFF { // never expires
			st.Expiry = time.Duration(n) * time.Second
		}
	}
	return st
}
