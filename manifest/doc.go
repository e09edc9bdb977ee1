// Package manifest owns what a URL holds: the piece layout of a task (how its
// bytes are cut into fixed-size pieces), and the task identity derived from the
// content's address. It performs no I/O and must not know about peers, the
// supernode or the disk.
package manifest
