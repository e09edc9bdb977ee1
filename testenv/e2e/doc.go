// Package e2e holds Damselfly's end-to-end tests: real supernode, dfdaemon
// and dfget processes on loopback against a counting origin. They are slow,
// so they build only with the e2e tag (make e2e); package testenv starts the
// components.
package e2e
