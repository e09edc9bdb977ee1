// Package trust owns the cluster's secrets and credentials: loading the shared
// cluster, admin and webhook tokens from files, the signed, expiring credentials
// the supernode issues to peers (one speaking for a peer, one granting a peer
// access to one task's pieces), and the HTTP glue that requires or attaches them.
//
// Nothing in this package logs a secret or a credential: Secret and Key print as
// "REDACTED" through fmt, encoding/json, encoding.TextMarshaler and log/slog, and
// verification errors never echo the token they refused.
package trust
