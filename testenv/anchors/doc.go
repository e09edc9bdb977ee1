// Package anchors owns the outside systems that Damselfly's benchmarks are
// measured against ("anchors"): Dragonfly 1.0.6 (supernode + dfget, with
// nginx serving the supernode's download port) and Uber Kraken v0.1.4
// (origin, tracker and agents, with its testfs storage backend, redis and
// nginx). It builds them from their Go modules (fetched through the Go
// module proxy, built in a temporary copy of the module tree, binaries cached
// under the user's cache directory by version) and starts them as plain
// processes on 127.0.0.1 through package testenv, with configurations that
// remove their default rate limits.
//
// Nothing here is imported by the product; the benchmark scenario that uses
// it is testenv/bench's peers scenario. The pure parts (configuration
// rendering, cache keys) are unit-tested; building and running the anchors
// happens only from the benchmark CLI.
package anchors
