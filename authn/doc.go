// Package authn answers "who is this client?" at CONNECT, before a byte
// reaches the broker: an ordered chain of authenticators (certificate,
// client-info rules, password file, JWT, HTTP webhook) that each allow,
// deny or pass, and yields an identity.Identity for the ACLs.
package authn
