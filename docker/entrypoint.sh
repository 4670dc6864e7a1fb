#!/bin/sh
# The image's entrypoint (under tini): started as root, it gives the service user the
# directories it writes (restic-backup-helper's setups mount them root-owned), then leaves root
# (as-service-user); runner/cli/container.py then reads the command as restic-backup-helper's
# entry.sh did. docs/deployment.md, "Users" and "The entrypoint".
set -eu
service_uid=10001
as_user=/usr/local/lib/restic-runner/as-service-user
container() { exec "$as_user" python3 -m runner.cli.container "$@"; }

if [ "$(id -u)" != 0 ] || [ "${RESTIC_RUNNER_RUN_AS_ROOT:-OFF}" = ON ]; then
  container "$@"
fi
caps=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
if [ "$(( (0x$caps >> 6) & 3 ))" != 3 ]; then  # CAP_SETGID and CAP_SETUID
  echo "restic-runner: running as root: this container cannot change user (no CAP_SETUID/CAP_SETGID);" \
       "set runAsUser/user: 10001 to run as the service user" >&2
  container "$@"
fi

# own DIR: DIR exists and belongs to the service user (recursively when it did not)
own() {
  [ -n "$1" ] || return 0
  if [ ! -e "$1" ]; then
    if mkdir -p "$1" 2>/dev/null; then
      chown "$service_uid:$service_uid" "$1" 2>/dev/null || true
    else
      echo "restic-runner: cannot create $1" >&2
    fi
    return 0
  fi
  [ -d "$1" ] || return 0
  [ "$(stat -c %u "$1")" = "$service_uid" ] && return 0
  if [ "$(( (0x$caps >> 0) & 1 ))" = 1 ] \
      && chown -R -P -h "$service_uid:$service_uid" "$1" 2>/dev/null; then  # links: not followed
    echo "restic-runner: $1 now belongs to the service user (uid $service_uid)" >&2
  else
    echo "restic-runner: cannot give $1 to the service user (uid $service_uid): read-only" \
         "or no CAP_CHOWN; writing there may fail" >&2
  fi
}

repository=${RESTIC_REPOSITORY:-}
case "$repository" in
  local:/*) repository=${repository#local:} ;;
  /*) ;;
  *) repository="" ;;
esac
for dir in "${RESTIC_RUNNER_STATE_DIR:-}" "${RESTIC_RUNNER_COMPAT_LOG_DIR:-}" "${METRICS_DIR:-}" \
           "${RESTIC_CACHE_DIR:-/.cache/restic}" "${XDG_CACHE_HOME:-}" "$repository"; do
  own "$dir"
done
case "${TMPDIR:-/tmp}" in
  /tmp | /tmp/) ;;
  *) own "$TMPDIR" ;;
esac
container "$@"
