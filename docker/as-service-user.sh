#!/bin/sh
# as-service-user COMMAND [ARGS...]: run COMMAND as the image's service user (restic-runner,
# uid 10001) when started as root, keeping only CAP_DAC_READ_SEARCH (read any file or directory,
# as restic-backup-helper's root could) when the container has it. Not root, root that cannot
# change user (no CAP_SETUID/CAP_SETGID, e.g. Kubernetes `capabilities: drop: [ALL]`), or
# RESTIC_RUNNER_RUN_AS_ROOT=ON: COMMAND runs as it is. docs/deployment.md, "Users".
# A restore (`restic-runner [compat] restore …`, the entrypoint's `restore`) also keeps what
# putting files back with their owners takes: CAP_CHOWN, CAP_FOWNER, CAP_FSETID and
# CAP_DAC_OVERRIDE, for that command only (docs/deployment.md, "Restoring ownership").
set -eu
service_uid=10001

# has_cap SET BIT: is capability BIT in this process's SET (CapEff, CapPrm, CapBnd)?
has_cap() {
  mask=$(sed -n "s/^$1:[[:space:]]*//p" /proc/self/status)
  [ "$(( (0x${mask:-0} >> $2) & 1 ))" = 1 ]
}

# is_restore COMMAND [ARGS...]: does this command line restore files? `restic-runner
# [--config F] [compat] restore …` (any path to restic-runner), and the entrypoint's
# `python3 -m runner.cli.container` followed by that or by `restore` / `/bin/restore`.
is_restore() {
  if [ "${2:-}" = -m ] && [ "${3:-}" = runner.cli.container ]; then
    shift 3
    case "${1:-}" in
      restore | /bin/restore | /usr/bin/restore | /usr/local/bin/restore) return 0 ;;
    esac
  fi
  case "${1:-}" in
    restic-runner | */restic-runner) shift ;;
    *) return 1 ;;
  esac
  while [ $# -gt 0 ]; do
    case "$1" in
      --config) [ $# -ge 2 ] || return 1; shift 2 ;;
      --config=* | compat) shift ;;
      restore) return 0 ;;
      *) return 1 ;;
    esac
  done
  return 1
}

if [ "$(id -u)" != 0 ] || [ "${RESTIC_RUNNER_RUN_AS_ROOT:-OFF}" = ON ]; then
  exec "$@"
fi
if ! has_cap CapEff 6 || ! has_cap CapEff 7; then  # CAP_SETGID, CAP_SETUID
  exec "$@"
fi
keep=""
# keep_cap BIT NAME: keep capability NAME (number BIT) when this process has it
keep_cap() {
  if has_cap CapPrm "$1"; then
    keep="${keep:+$keep,}+$2"
  fi
}
keep_cap 2 dac_read_search
if is_restore "$@"; then
  keep_cap 0 chown
  keep_cap 1 dac_override
  keep_cap 3 fowner
  keep_cap 4 fsetid
fi
set -- --inh-caps="-all${keep:+,$keep}" -- "$@"
if [ -n "$keep" ]; then
  set -- --ambient-caps="$keep" "$@"
fi
if has_cap CapEff 8; then  # CAP_SETPCAP
  # nothing else can come back, not even through exec; and access(2) honours the kept
  # capability (without no_setuid_fixup it drops it for a non-root user: a secret file the
  # service user can read would look unreadable)
  set -- --bounding-set="-all${keep:+,$keep}" --securebits=+no_setuid_fixup "$@"
fi
exec setpriv --reuid="$service_uid" --regid="$service_uid" --clear-groups "$@"
