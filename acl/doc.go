// Package acl answers "what may this client do?" for every PUBLISH,
// SUBSCRIBE and will message: rules from Mosquitto acl_file or EMQX
// acl.conf files and from the client's identity, compiled once per
// connection, deny by default.
package acl
