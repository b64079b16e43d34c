package main

import (
	"github.com/mqttgate/mqttgate/acl"
	"github.com/mqttgate/mqttgate/authn"
	"github.com/mqttgate/mqttgate/limits"
	"github.com/mqttgate/mqttgate/proxy"
)

// The deciders' types that satisfy the proxy's seams directly.
var (
	_ proxy.ConnectChecker = (*limits.Connects)(nil)
	_ proxy.ConnGate       = (*limits.Conns)(nil)
	_ proxy.Limiter        = (*limits.Session)(nil)
	_ proxy.TopicRights    = (*acl.View)(nil)
	_ proxy.Authenticator  = (*authn.Chain)(nil)
	_ proxy.AccessPolicy   = (*limits.AccessRules)(nil)
)
