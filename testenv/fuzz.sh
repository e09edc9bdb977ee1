#!/bin/sh
# fuzz.sh runs every Go native fuzz target of the repository for $FUZZTIME
# each (default 10s): `make test` runs it short, `make fuzz` longer, e.g.
# FUZZTIME=5m testenv/fuzz.sh. Crashers land in the package's
# testdata/fuzz/<Target>/ (keep them there once fixed: they become
# regression seeds). Run from the repository root.
set -eu
FUZZTIME="${FUZZTIME:-10s}"
# package target
TARGETS='
./cache FuzzPieceRecords
./manifest FuzzTaskID
./manifest FuzzParseDigest
./manifest/oci FuzzParseManifest
./manifest/oci FuzzParseIndex
./manifest/oci FuzzDiffIDs
./origin FuzzParseContentRange
./fusefs FuzzStargzTOC
./trust FuzzVerify
'
echo "$TARGETS" | while read -r pkg target; do
	[ -n "$pkg" ] || continue
	echo "fuzz: $pkg $target for $FUZZTIME"
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
done
