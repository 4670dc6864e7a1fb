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

# system_dir DIR: a directory own() never gives away: /, the system's directories, anything
# inside those that hold only the system's files
system_dir() {
  case "$1" in
    / | /var | /var/lib | /var/cache | /var/spool | /var/tmp | /var/local | /var/opt | /var/mail \
    | /mnt | /media | /srv | /tmp | /data) return 0 ;;
    /proc | /proc/* | /sys | /sys/* | /dev | /dev/* | /etc | /etc/* | /usr | /usr/* \
    | /bin | /bin/* | /sbin | /sbin/* | /lib* | /boot | /boot/* | /run | /run/* \
    | /root | /root/* | /home | /home/* | /opt | /opt/*) return 0 ;;
  esac
  return 1
}

# mounts_inside DIR: the mount points strictly inside DIR, one a line (as /proc/self/mountinfo
# writes them: a space, tab, newline or backslash in one is an octal escape)
mounts_inside() {
  awk -v dir="$1/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo
}

# in_tree DIR EXPRESSION...: `find DIR EXPRESSION` over DIR's own tree: not into a file system
# mounted inside it (a volume or bind mount there is given, or not, on its own)
in_tree() {
  tree=$1
  shift
  for mount in $(mounts_inside "$tree"); do
    set -- -path "$mount" -prune -o "$@"
  done
  find "$tree" -xdev "$@"
}

# shared_reason DIR: why DIR looks shared with others (nothing when it does not): an entry
# owned by a user other than root and the service user, a set-id file or a device (what a
# system's or another user's tree holds, not a repository, cache or log directory)
shared_reason() {
  case "$(mounts_inside "$1")" in
    *[\\*?[]*) echo "a mount point inside it has an unusual name"; return 0 ;;
  esac
  if ! found=$(in_tree "$1" \( \( ! -uid 0 ! -uid "$service_uid" \) -o -perm -4000 \
      -o -perm -2000 -o -type b -o -type c \) -print -quit 2>/dev/null); then
    echo "it cannot be read through"
  elif [ -n "$found" ]; then
    echo "it holds $found (owner uid $(stat -c %u "$found"), mode $(stat -c %a "$found"))"
  fi
}

# own DIR: DIR exists and belongs to the service user. A missing DIR is made (only what is made
# changes owner); an existing one not the service user's is given to it recursively only when it
# is no system directory and looks like restic-backup-helper's root wrote it alone (only root's
# and the service user's entries, no set-id file or device); never through a symbolic link, nor
# into a file system mounted inside it. docs/deployment.md, "The entrypoint".
own() {
  [ -n "$1" ] || return 0
  dir=$(readlink -m -- "$1")
  if system_dir "$dir"; then
    echo "restic-runner: not giving $1 to the service user (uid $service_uid): a system" \
         "directory; give the service user a directory of its own there" >&2
    return 0
  fi
  if [ ! -e "$dir" ]; then
    if mkdir -p "$dir" 2>/dev/null; then
      chown -h "$service_uid:$service_uid" "$dir" 2>/dev/null || true
    else
      echo "restic-runner: cannot create $1" >&2
    fi
    return 0
  fi
  [ -d "$dir" ] || return 0
  [ "$(stat -c %u "$dir")" = "$service_uid" ] && return 0
  reason=$(shared_reason "$dir")
  if [ -n "$reason" ]; then
    echo "restic-runner: not giving $1 to the service user (uid $service_uid): it looks" \
         "shared ($reason); chown what it must write (chown -R $service_uid DIR) or set" \
         "RESTIC_RUNNER_RUN_AS_ROOT=ON" >&2
  elif [ "$(( (0x$caps >> 0) & 1 ))" = 1 ] \
      && in_tree "$dir" -exec chown -h "$service_uid:$service_uid" {} + 2>/dev/null; then
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
