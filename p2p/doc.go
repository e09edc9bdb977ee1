// Package p2p owns the peer engine that runs in dfdaemon and in dfget's
// embedded mode: downloading a task piece by piece from parents the
// supernode suggests (verifying every piece), serving the pieces it holds to
// other peers, host-wide rate limits, going to the origin when no supernode
// can be reached, and delivering the finished file atomically. It does not
// choose parents for others (package supernode/scheduler does) and does not
// talk to origins itself (package origin does).
package p2p
