#!/bin/sh
# Download one release artefact, refuse it unless its SHA-256 is the pinned one, and install
# the named executable from it. Used by the Dockerfile's fetch stage.
#
#   fetch-verified.sh URL SHA256 NAME DEST
#
# URL may be a Debian package (.deb: NAME is taken from usr/bin/ inside it) or an upstream
# release binary compressed with bzip2 (.bz2, as restic publishes them) or not compressed.
set -eu

[ $# -eq 4 ] || { echo "usage: $0 URL SHA256 NAME DEST" >&2; exit 2; }
url=$1 sha256=$2 name=$3 dest=$4

case "$sha256" in
  *[!0-9a-f]* | "") echo "fetch-verified: $name: SHA-256 must be 64 lowercase hex digits" >&2; exit 2 ;;
esac
[ ${#sha256} -eq 64 ] || { echo "fetch-verified: $name: SHA-256 must be 64 hex digits" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file="$work/artefact"

curl --fail --silent --show-error --location --retry 3 --output "$file" "$url"
echo "$sha256  $file" | sha256sum --check --strict --quiet - || {
  echo "fetch-verified: $name: checksum mismatch for $url (got $(sha256sum "$file" | cut -c1-64))" >&2
  exit 1
}

case "$url" in
  *.deb)
    dpkg-deb --fsys-tarfile "$file" | tar -x -C "$work" "./usr/bin/$name"
    mv "$work/usr/bin/$name" "$work/$name.bin" ;;
  *.bz2) bunzip2 --stdout "$file" > "$work/$name.bin" ;;
  *) mv "$file" "$work/$name.bin" ;;
esac
install -D -m 0755 "$work/$name.bin" "$dest"
"$dest" version >/dev/null
echo "fetch-verified: $name $("$dest" version | head -n 1) from $url (sha256 ok)"
