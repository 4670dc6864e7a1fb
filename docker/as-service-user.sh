#!/bin/sh
# as-service-user COMMAND [ARGS...]: run COMMAND as the image's service user (restic-runner,
# uid 10001) when started as root, keeping only CAP_DAC_READ_SEARCH (read any file or directory,
# as restic-backup-helper's root could) when the container has it. Not root, root that cannot
# change user (no CAP_SETUID/CAP_SETGID, e.g. Kubernetes `capabilities: drop: [ALL]`), or
# RESTIC_RUNNER_RUN_AS_ROOT=ON: COMMAND runs as it is. docs/deployment.md, "Users".
set -eu
service_uid=10001

# has_cap SET BIT: is capability BIT in this process's SET (CapEff, CapPrm, CapBnd)?
has_cap() {
  mask=$(sed -n "s/^$1:[[:space:]]*//p" /proc/self/status)
  [ "$(( (0x${mask:-0} >> $2) & 1 ))" = 1 ]
}

if [ "$(id -u)" != 0 ] || [ "${RESTIC_RUNNER_RUN_AS_ROOT:-OFF}" = ON ]; then
  exec "$@"
fi
if ! has_cap CapEff 6 || ! has_cap CapEff 7; then  # CAP_SETGID, CAP_SETUID
  exec "$@"
fi
keep=""
if has_cap CapPrm 2; then  # CAP_DAC_READ_SEARCH
  keep="+dac_read_search"
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
