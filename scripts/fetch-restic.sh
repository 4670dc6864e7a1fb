#!/usr/bin/env bash
# Put restic VERSION at .tools/restic-VERSION/restic (the tests run against 0.14 and 0.18).
#
# Usage: scripts/fetch-restic.sh VERSION SUITE      e.g. `0.14 bookworm`, `0.18 trixie`
#
# - Already there and `restic version` says VERSION: nothing to do (silent).
# - The system restic is VERSION (Debian 12: 0.14, Debian 13: 0.18): symlink it.
# - Otherwise: download Debian SUITE's restic .deb with an isolated apt (its own
#   sources.list, lists and cache under .tools/work/, system apt state untouched)
#   and unpack it with `dpkg -x`. restic is a static Go binary that only needs libc6
#   (bookworm's 0.14 runs on trixie, trixie's 0.18 needs libc6 >= 2.34 and runs on
#   bookworm). See the environment notes, section 2.
# The result is checked with `restic version`; a SUITE that doesn't ship VERSION fails.
#
# The Debian mirror is read from the machine's own apt sources; the public
# deb.debian.org is only a last-resort fallback.
set -euo pipefail

usage() { echo "usage: $0 VERSION SUITE   (e.g. 0.14 bookworm, 0.18 trixie)" >&2; exit 2; }
[ $# -eq 2 ] || usage
version=$1
suite=$2
[[ $version =~ ^[0-9]+\.[0-9]+$ ]] || usage
[[ $suite =~ ^[a-z]+$ ]] || usage

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
dest_dir="$root/.tools/restic-$version"
dest="$dest_dir/restic"
work="$root/.tools/work/restic-$version"
fallback_mirror="http://deb.debian.org/debian"

is_version() { # is_version BINARY: true when BINARY runs and reports restic VERSION.x
  [ -x "$1" ] && "$1" version 2>/dev/null | grep -q "^restic ${version//./\\.}\."
}

log() { echo "fetch-restic $version: $*" >&2; }

if is_version "$dest"; then
  exit 0
fi
mkdir -p "$dest_dir"
rm -f "$dest"

# The system's own restic is this version (0.14 on Debian 12, 0.18 on Debian 13): reuse it.
sys_restic=$(command -v restic || true)
if [ -n "$sys_restic" ] && is_version "$sys_restic"; then
  ln -s "$sys_restic" "$dest"
  log "linked ${dest#"$root"/} -> $sys_restic ($("$dest" version))"
  exit 0
fi

# The first http(s) URI of the machine's main Debian archive (not -security/-updates).
if ! mirror=$(bash scripts/debian-mirror.sh); then
  mirror=$fallback_mirror
  log "no Debian mirror found in /etc/apt sources; falling back to $mirror"
fi

for tool in apt-get dpkg; do
  command -v "$tool" >/dev/null || { log "needs $tool (Debian/Ubuntu)"; exit 1; }
done

rm -rf "$work"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/root"
echo "deb $mirror $suite main" >"$work/sources.list"
# An empty dpkg status and no pinning: otherwise an installed restic that is newer than
# SUITE's (0.18 on Debian 13 when fetching bookworm's 0.14) stays apt's candidate, and
# `apt-get download` fails with "Can't find a source to download version ...".
: >"$work/status"
apt_opts=(
  -o "Dir::Etc::SourceList=$work/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=/dev/null"
  -o "Dir::State::status=$work/status"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
  -o "Acquire::Languages=none"
)
# snapshot.debian.org archives carry an expired Valid-Until by design.
case "$mirror" in *snapshot.debian.org*) apt_opts+=(-o "Acquire::Check-Valid-Until=false") ;; esac

log "downloading restic from Debian $suite ($mirror) into ${work#"$root"/}"
if ! apt-get "${apt_opts[@]}" update -qq >"$work/update.log" 2>&1; then
  cat "$work/update.log" >&2
  log "apt-get update of the $suite source failed (NO_PUBKEY? then upgrade debian-archive-keyring)"
  exit 1
fi
(cd "$work" && apt-get "${apt_opts[@]}" download -qq restic) >"$work/download.log" 2>&1 || {
  cat "$work/download.log" >&2
  log "could not download restic from Debian $suite"
  exit 1
}
debs=("$work"/restic_*.deb)
[ -f "${debs[0]}" ] || { log "no restic .deb downloaded"; exit 1; }
dpkg -x "${debs[0]}" "$work/root"
install -m 0755 "$work/root/usr/bin/restic" "$dest.tmp"
mv -f "$dest.tmp" "$dest"

if ! is_version "$dest"; then
  log "${debs[0]##*/} from Debian $suite is not restic $version:"
  "$dest" version >&2 || true
  rm -f "$dest"; rmdir "$dest_dir" 2>/dev/null || true
  log "(apt logs and the .deb are kept in ${work#"$root"/})"
  exit 1
fi
# The apt lists of a suite are ~60 MB; only the binary is needed.
rm -rf "$work"; rmdir "$root/.tools/work" 2>/dev/null || true
log "installed ${dest#"$root"/} from ${debs[0]##*/} ($("$dest" version))"
