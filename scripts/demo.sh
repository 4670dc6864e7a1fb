#!/usr/bin/env bash
# The demo behind `make demo`: a real restic backup job run twice by restic-runner,
# everything under ./demo/ (sample data, secret, config, repository, state).
# Idempotent: a re-run reuses the data, password and repository, and adds a snapshot.
# Needs the set-up of scripts/bootstrap.sh (`make demo` runs it first).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd -P)
demo=$root/demo
cli=$root/.venv/bin/restic-runner
py=$root/.venv/bin/python
config=demo/restic-runner.toml

step() { printf '\n==> %s\n' "$*"; }
failed() {
  local rc=$?
  echo "demo: FAILED (exit $rc) at line $1: $2" >&2
  exit "$rc"
}
trap 'failed "$LINENO" "$BASH_COMMAND"' ERR

for f in "$py" "$cli"; do
  [ -x "$f" ] || { echo "demo: $f is missing; run \`make demo\` (or scripts/bootstrap.sh) first" >&2; exit 1; }
done
command -v restic >/dev/null || { echo "demo: restic is not installed; run \`make demo\`" >&2; exit 1; }

# --- sample data -----------------------------------------------------------------------
if [ ! -e "$demo/data/.complete" ]; then
  step "Generating sample data in demo/data/ (300 small text files, 4 MB of random data)"
  rm -rf "$demo/data" "$demo/data.tmp"
  mkdir -p "$demo"
  "$py" - "$demo/data.tmp" <<'PY'
import random
import sys
from pathlib import Path

out = Path(sys.argv[1])
rng = random.Random(20261126)  # deterministic content
words = ("restic backup snapshot repository prune forget check lock tree blob pack index "
         "key config data chunk rclone remote sync cron nightly weekly").split()
for d in range(10):
    sub = out / "docs" / f"dir{d:02d}"
    sub.mkdir(parents=True)
    for i in range(30):
        lines = (" ".join(rng.choices(words, k=12)) for _ in range(rng.randint(5, 60)))
        (sub / f"note{i:03d}.txt").write_text(f"file {d}/{i}\n" + "\n".join(lines) + "\n")
blobs = out / "blobs"
blobs.mkdir()
for i in range(4):
    (blobs / f"random{i}.bin").write_bytes(rng.randbytes(1024 * 1024))
(out / "notes").mkdir()
(out / "notes" / "changelog.txt").write_text("demo changelog\n")
(out / ".complete").write_text("")
PY
  mv "$demo/data.tmp" "$demo/data"
fi

# --- secret ---------------------------------------------------------------------------------
password_file=$demo/secrets/restic-password
(
  umask 077
  mkdir -p "$demo/secrets"
  chmod 0700 "$demo/secrets"
  if [ ! -s "$password_file" ]; then
    step "Creating a random repository password in demo/secrets/restic-password (mode 0600)"
    "$py" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$password_file.tmp"
    mv "$password_file.tmp" "$password_file"
  fi
  chmod 0600 "$password_file"
)

client_secret=$demo/secrets/demo-client.whsec
if [ ! -s "$client_secret" ]; then
  step "Generating an API client secret: restic-runner keys generate whsec (mode 0600)"
  "$cli" keys generate whsec --out "$client_secret"
fi
port=${DEMO_PORT:-$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
url=http://127.0.0.1:$port

# --- config ---------------------------------------------------------------------------------
toml_str() { # a TOML basic string
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}
cat >"$config.tmp" <<EOF
# restic-runner demo configuration, written by scripts/demo.sh
state_dir = "state"          # relative paths are relative to the config file's directory
hostname = "demo"

[restic]
repository = $(toml_str "$demo/repo")
password_file = $(toml_str "$password_file")
cache_dir = $(toml_str "$demo/cache")

[jobs.nightly]
kind = "backup"
paths = [$(toml_str "$demo/data")]
tags = ["demo"]
forget_args = ["--keep-last", "5"]
timeout = "10m"
params = ["tags", "dry_run"]
allowed_tags = ["api", "weekly", "manual"]

[server]
bind = "127.0.0.1:$port"

[[clients]]
name = "demo"
secret_file = $(toml_str "$client_secret")
jobs = ["nightly"]
EOF
mv "$config.tmp" "$config"
echo "demo: config $config"

# --- repository -------------------------------------------------------------------------------
if [ ! -e "$demo/repo/config" ]; then
  step "Initialising the restic repository demo/repo (plain \`restic init\`: restic-runner never inits)"
  rm -rf "$demo/repo"
  RESTIC_REPOSITORY=$demo/repo RESTIC_PASSWORD_FILE=$password_file RESTIC_CACHE_DIR=$demo/cache \
    restic init
fi

# --- runs -------------------------------------------------------------------------------------
step "Run 1: restic-runner run nightly (backup, then forget --keep-last 5)"
"$cli" run nightly --config "$config"

step "Changing demo/data: appending to notes/changelog.txt, adding notes/added-<time>.txt"
now=$(date -u +%Y%m%dT%H%M%SZ)
echo "change at $now" >>"$demo/data/notes/changelog.txt"
echo "added at $now" >"$demo/data/notes/added-$now.txt"

step "Run 2: restic-runner run nightly again (incremental: only the changes are new)"
"$cli" run nightly --config "$config"

step "restic-runner status"
"$cli" status --config "$config"

step "Serving the HTTP API on $url (gunicorn, 2 workers)"
server_log=$demo/server.log
"$cli" serve --config "$config" >"$server_log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if "$py" -c "import urllib.request as u; u.urlopen('$url/healthz', timeout=1)" 2>/dev/null; then
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || { cat "$server_log" >&2; failed "serve did not start"; }
  sleep 0.1
done
"$py" -c "import urllib.request as u, json; print(json.load(u.urlopen('$url/readyz')))"

step "Run 3: a signed trigger through the API, followed to the end"
echo "\$ restic-runner trigger $url nightly --secret-file demo/secrets/demo-client.whsec --tag api --wait 120"
"$cli" trigger "$url" nightly --secret-file "$client_secret" --tag api --wait 120

step "restic-runner status"
"$cli" status --config "$config"

step "Next, try"
echo "  # start the job and print its run id (the server runs it; the request is signed)"
echo "  .venv/bin/restic-runner serve --config $config &"
echo "  .venv/bin/restic-runner trigger $url nightly --secret-file $client_secret --wait 600"
echo "  # with curl and a bearer token (restic-runner keys generate token --out FILE, then a"
echo "  # [[clients]] entry with token_file = FILE):"
echo "  curl -sS -X POST -H \"Authorization: Bearer \$(cat FILE)\" $url/trigger/nightly"
echo "  curl -sS -H \"Authorization: Bearer \$(cat FILE)\" $url/runs/<run_id>/result"
echo "  curl -sS $url/metrics"

step "Where things are"
echo "  run history (SQLite):      demo/state/history.db"
echo "  run logs (masked):         demo/state/logs/nightly/<run id>.log"
echo "  last run record:           demo/state/last-nightly.json"
echo "  repository:                demo/repo   (password: demo/secrets/restic-password)"
echo "  config:                    $config"
echo "  try: .venv/bin/restic-runner status --json --config $config"
echo "       RESTIC_REPOSITORY=demo/repo RESTIC_PASSWORD_FILE=demo/secrets/restic-password restic snapshots"
if [ -d "$demo/state" ]; then
  echo
  echo "demo/state/ now holds:"
  (cd "$demo/state" && find . -maxdepth 2 -not -name . | sort | sed 's/^\.\//  /')
fi
