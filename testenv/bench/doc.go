// Package bench owns Damselfly's benchmark scenarios, the library behind the
// dfbench CLI (testenv/cmd/dfbench, `make bench`): swarm scaling against the
// Kumar–Ross bound, single-client overhead against curl, scheduler
// throughput, dfmount against dfget and the local disk, and df-snapshotter's
// lazy start against a full pull. Scenarios start real components through
// package testenv (supernode, dfget, dfdaemon, dfmount, df-snapshotter
// processes, a capped and counting origin, docker-registry, containerd) on
// 127.0.0.1, measure them, and return plain result structs that this package
// also knows how to print as tables, check against targets, write as JSON and
// draw as PNG plots (gonum/plot).
//
// It holds no product logic and is not imported by the product. The pure
// helpers (percentiles, parsing dfget's result line, JSON output, target
// checks) are unit-tested without processes; the scenarios run only from the
// CLI.
package bench
