// Package fusefs owns Damselfly's FUSE file systems: read-only go-fuse node
// trees over a single URL, a dataset manifest, an eStargz layer blob or a
// prefix of an S3 bucket (S3Root: each directory listed at its first use,
// its objects' contents opened at their first read, its small objects read
// through one pack per directory),
// whose reads fault in pieces through the peer engine (via the Content
// interface) and whose attributes and listings come from metadata, so they
// work offline. It also owns mounting, stale-mount detection and unmounting.
// It does not fetch anything itself and knows nothing of supernodes.
//
// Untrusted input is checked before use: an eStargz TOC's every size,
// offset, count and name is bounded by the blob's length and sane limits
// (see MaxFileSize, MaxChunkAlloc, MaxTOCJSON) so a hostile layer fails its
// mount or one file, never the process; dataset manifests refuse absurd
// sizes, file/directory conflicts and symlinks leaving the mount; a panic
// in any FUSE handler is recovered into EIO for that call and logged.
//
// Extended attributes on every regular file:
//
//	user.damselfly.progress   "<bytes present>/<size>" of the backing content
//	user.damselfly.digest     expected digest of the file, when known
//	user.damselfly.source     the URL the file comes from (credentials redacted)
//	user.damselfly.mode       "p2p" or "direct" (straight from the origin), when
//	                          the content says (a whole URL's file)
//
// and on the directories of an S3 prefix mount user.damselfly.source and
// user.damselfly.listing ("store" or "cached <time>").
package fusefs
