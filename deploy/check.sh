#!/usr/bin/env bash
# Checks the deployment files offline:
#  1. builds helm from its Go module into ~/.cache/damselfly/tools (once, cached);
#  2. renders the chart for default and non-default values and validates
#     every manifest (strict k8s.io/api decoding, references, Secret modes,
#     each daemon accepting its rendered configuration): deploy/check;
#  3. builds every binary static (CGO_ENABLED=0), as the image does;
#  4. builds the image when a container builder is present (docker, podman
#     or buildah); skipped, with a note, when none is.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
GO=${GO:-go}
HELM_VERSION=v3.22.0
TOOLS=${DAMSELFLY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/damselfly/tools}
HELM=$TOOLS/helm-$HELM_VERSION

if [ ! -x "$HELM" ]; then
	echo "building helm $HELM_VERSION from helm.sh/helm/v3 (takes minutes, once)"
	mkdir -p "$TOOLS/tmp"
	GOBIN=$TOOLS/tmp GOFLAGS=-mod=mod $GO install helm.sh/helm/v3/cmd/helm@$HELM_VERSION
	mv "$TOOLS/tmp/helm" "$HELM"
fi

"$HELM" lint --strict deploy/helm/damselfly
HELM=$HELM $GO test -tags deploycheck -count=1 ./deploy/check/

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CGO_ENABLED=0 $GO build -trimpath -o "$out/" ./cmd/...
for b in "$out"/*; do
	if ldd "$b" >/dev/null 2>&1; then
		echo "not static: $(basename "$b")"; exit 1
	fi
done
echo "static binaries: $(cd "$out" && echo *)"

builder=""
for c in docker podman buildah; do
	if command -v $c >/dev/null 2>&1; then builder=$c; break; fi
done
case "$builder" in
docker | podman)
	if $builder info >/dev/null 2>&1; then
		$builder build -f deploy/Dockerfile -t damselfly:check .
	else
		echo "SKIP image build: $builder is installed but its engine does not answer"
	fi ;;
buildah) buildah bud -f deploy/Dockerfile -t damselfly:check . ;;
*) echo "SKIP image build: no container builder (docker, podman, buildah); build with: docker build -f deploy/Dockerfile ." ;;
esac
echo "deploy check: OK"
