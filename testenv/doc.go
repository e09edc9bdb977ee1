// Package testenv starts real Damselfly components on loopback for tests and
// benchmarks: a counting, rate-capped, fault-injecting origin HTTP server, the
// supernode, dfdaemon peers and dfget processes, and tears them down when the
// test ends. It holds no product logic.
//
// Everything takes a TB, which *testing.T and *testing.B satisfy; a program
// that is not a test (the benchmark CLI) uses NewProgramTB instead.
package testenv
