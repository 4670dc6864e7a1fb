#!/usr/bin/env bash
# Set up everything `make test` / `make demo` need, on Debian 12 or 13, idempotently:
#   1. system packages (apt, only when a binary is missing): restic, rclone,
#      prometheus-pushgateway, prometheus (for promtool), webhook and wrk (for
#      bench/bench_api.py); bash, jq, flock, curl, timeout, script (restic-backup-helper's
#      scripts, run side by side in tests/compat); python3-venv if needed
#   2. .venv with `pip install -e '.[test]'` (again whenever pyproject.toml changes)
#   3. restic 0.14 and 0.18 at .tools/restic-{0.14,0.18}/restic (scripts/fetch-restic.sh):
#      a link to the system restic when it is that version, else Debian bookworm's /
#      trixie's binary (Debian 12 links 0.14 and fetches 0.18, Debian 13 the reverse)
# Silent and fast when there is nothing to do.
#
# Usage: scripts/bootstrap.sh [--venv-only]     (from any directory)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv_only=0
case "${1:-}" in
  "") ;;
  --venv-only) venv_only=1 ;;
  *) echo "usage: $0 [--venv-only]" >&2; exit 2 ;;
esac

venv=.venv
stamp=$venv/.bootstrap-stamp

log() { echo "bootstrap: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    log "root is needed for: $*"
    exit 1
  fi
}

apt_updated=0
policy_rc=/usr/sbin/policy-rc.d
our_policy_rc=0
cleanup() {
  if [ "$our_policy_rc" = 1 ]; then as_root rm -f "$policy_rc"; fi
}
trap cleanup EXIT

apt_install() { # apt_install PACKAGE...
  command -v apt-get >/dev/null || { log "missing $*, and no apt-get to install it"; exit 1; }
  local out
  out=$(mktemp)
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq >"$out" 2>&1 || { cat "$out" >&2; rm -f "$out"; exit 1; }
    apt_updated=1
  fi
  # Packages such as prometheus / prometheus-pushgateway would start their services
  # on a systemd host; nothing should listen after a set-up, so deny starts meanwhile.
  if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy_rc" >/dev/null
    as_root chmod 0755 "$policy_rc"
    our_policy_rc=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >"$out" 2>&1 || { cat "$out" >&2; rm -f "$out"; exit 1; }
  rm -f "$out"
  cleanup
  our_policy_rc=0
}

# --- 1. system packages -------------------------------------------------------------
if [ "$venv_only" = 0 ]; then
  missing=()
  # binary:package
  for pair in restic:restic rclone:rclone prometheus-pushgateway:prometheus-pushgateway \
    promtool:prometheus webhook:webhook wrk:wrk \
    bash:bash jq:jq flock:util-linux curl:curl timeout:coreutils script:bsdutils; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
fi

# --- 2. Python virtualenv ---------------------------------------------------------------
venv_ok() { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pip' 2>/dev/null; }

new_venv=0
if ! venv_ok; then
  py=""
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py=$candidate
      break
    fi
  done
  [ -n "$py" ] || { log "needs Python >= 3.11 (python3.11 or python3)"; exit 1; }
  if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
    # Debian splits venv/ensurepip out of the interpreter package.
    pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    pkgs=(python3-venv)
    if apt-cache show "python$pyver-venv" >/dev/null 2>&1; then pkgs+=("python$pyver-venv"); fi
    apt_install "${pkgs[@]}"
  fi
  log "creating $venv with $py ($("$py" --version 2>&1))"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  new_venv=1
fi

if [ "$new_venv" = 1 ] || [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ] ||
  [ ! -x "$venv/bin/restic-runner" ]; then
  log "pip install -e '.[test]'"
  # compat mode: a plain .pth path entry instead of setuptools' import hook, which costs
  # ~10 ms of start-up on every command (bench/bench_overhead.py measures start-up).
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=compat
  touch "$stamp"
fi

# --- 3. both restic versions for the tests -------------------------------------------------
if [ "$venv_only" = 0 ]; then
  bash scripts/fetch-restic.sh 0.14 bookworm
  bash scripts/fetch-restic.sh 0.18 trixie
fi
