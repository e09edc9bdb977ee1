// Package tlsconf owns the TLS configuration of every Damselfly listener and
// client: turning the --tls-cert, --tls-key and --tls-ca flags into server
// and client tls.Configs (mutual TLS when a CA is given, TLS 1.2 at least,
// certificates reloaded when their files change), and generating the CA and
// leaf certificates that `dfctl cert` writes.
package tlsconf
