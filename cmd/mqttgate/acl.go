package main

import (
	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/acl"
	"github.com/mqttgate/mqttgate/proxy"
)

func (c *config) checkACL() error {
	if c.ACLNoMatch != "deny" && c.ACLNoMatch != "allow" {
		return bad("ACL_NO_MATCH", "%q: want deny or allow", c.ACLNoMatch)
	}
	if c.ACLDenyAction != "ignore" && c.ACLDenyAction != "disconnect" {
		return bad("ACL_DENY_ACTION", "%q: want ignore or disconnect", c.ACLDenyAction)
	}
	if c.ACLMode != "enforce" && c.ACLMode != "dry-run" {
		return bad("ACL_MODE", "%q: want enforce or dry-run", c.ACLMode)
	}
	return nil
}

// buildACL loads the ACL file and sets the proxy's topic checks.
func (c *config) buildACL(pc *proxy.Config, log zerolog.Logger) (*acl.Engine, error) {
	e, err := acl.NewEngine(acl.Options{File: c.ACLFile, NoMatchAllow: c.ACLNoMatch == "allow",
		DryRun: c.ACLMode == "dry-run", DenyDisconnect: c.ACLDenyAction == "disconnect"})
	if err != nil {
		return nil, bad("ACL_FILE", "%v", err)
	}
	switch {
	case c.ACLFile != "":
		log.Info().Str("file", c.ACLFile).Int("rules", e.Rules()).Msg("ACL file loaded")
	case c.ACLNoMatch == "deny":
		log.Warn().Msg("no ACL file (MQTTGATE_ACL_FILE): clients may only do what their identity's own rules allow")
	}
	if c.ACLMode == "dry-run" {
		log.Warn().Msg("MQTTGATE_ACL_MODE=dry-run: ACL denials are logged and counted, not enforced")
	}
	pc.Topics = func(s *proxy.Session) proxy.TopicRights {
		return e.View(acl.ClientFrom(s.Identity, s.ClientAddr.Addr()))
	}
	pc.TopicCheckDelivery = c.ACLCheckDelivery
	return e, nil
}
