// Package manifest owns what a URL holds: the piece layout of a task (how its
// bytes are cut into fixed-size pieces), the task identity derived from the
// content's address, and checking a whole content against its digest
// (DigestVerifier). It performs no I/O and must not know about peers, the
// supernode or the disk.
package manifest
