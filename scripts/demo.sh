#!/usr/bin/env bash
# The demo behind `make demo`: restic-runner end to end on this machine, all on loopback.
#   1. a real restic backup job (`nightly`) run twice from the CLI, then `status`;
#   2. Debian's Pushgateway and Prometheus 2.42 started with the shipped alert rules
#      (deploy/prometheus/restic-runner.rules.yml) and a copy of the documented scrape config
#      (deploy/prometheus/prometheus.example.yml), plus a webhook receiver;
#   3. the HTTP API served (gunicorn), a signed trigger of `nightly` followed to the end, then a
#      signed trigger of `broken` (a backup of a path that does not exist) that fails;
#   4. the result webhooks, each verified with the `standardwebhooks` library, and the alert
#      ResticRunnerLastRunFailed as Prometheus reports it firing (GET /api/v1/alerts).
# Everything it starts is stopped when it ends, fails or is interrupted (Ctrl-C): nothing is
# left running or listening. It takes under a minute once set up.
#
# Files: everything under ./demo/ (sample data, secrets, config, repository, state, and
# demo/monitoring/: Prometheus's and the Pushgateway's data, their logs, the received webhooks).
# Idempotent: a re-run reuses the data, secrets and repository, and adds snapshots.
# Needs the set-up of scripts/bootstrap.sh (`make demo` runs it first).
#
# Environment:
#   DEMO_PORT   the port the API listens on, on 127.0.0.1 (default: a free port). Prometheus,
#               the Pushgateway and the webhook receiver always take free ports.
#   DEMO_DIR    where the demo keeps its files (default: ./demo)
#
# Usage: scripts/demo.sh [-h|--help]
set -Eeuo pipefail
umask 077 # what the demo writes (logs, ports, received webhooks) is for this user only

case "${1:-}" in
  "") ;;
  -h | --help) sed -n '2,/^set -/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [-h|--help]   (environment: DEMO_PORT, DEMO_DIR)" >&2; exit 2 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd -P)
demo=${DEMO_DIR:-$root/demo}
mkdir -p "$demo"
demo=$(cd "$demo" && pwd -P)
cli=$root/.venv/bin/restic-runner
py=$root/.venv/bin/python
config=$demo/restic-runner.toml
monitored=$demo/restic-runner.monitored.toml
mon=$demo/monitoring
started_at=$SECONDS

step() { printf '\n==> %s\n' "$*"; }
show() { # a path as the reader can type it from the repository's root
  case $1 in "$root"/*) printf '%s' "${1#"$root"/}" ;; *) printf '%s' "$1" ;; esac
}
failed() {
  local rc=$?
  echo "demo: FAILED (exit $rc) at line $1: $2" >&2
  exit "$rc"
}
trap 'failed "$LINENO" "$BASH_COMMAND"' ERR

# --- what the demo starts, and stopping it ---------------------------------------------------
pids=()   # background processes, in start order
ports=()  # what they listen on
any_alive() { # any_alive PID...: one of them still runs
  local p
  for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done
  return 1
}
stop_all() {
  local pid i
  # newest first: the service stops before the receivers it delivers to
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then # 10 s were not enough: it and its children (workers)
      local children
      children=$(ps -o pid= --ppid "$pid" 2>/dev/null | xargs) || true
      echo "demo: $pid did not stop within 10 s: killed, with its children ${children:-(none)}" >&2
      # shellcheck disable=SC2086 # one pid a word
      kill -KILL "$pid" $children 2>/dev/null || true
      # shellcheck disable=SC2086
      for _ in $(seq 1 50); do any_alive $children || break; sleep 0.1; done
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [ ${#pids[@]} -gt 0 ]; then
    local listening
    listening=$("$py" - "${ports[@]}" <<'PY'
import socket
import sys

for port in sys.argv[1:]:
    with socket.socket() as s:
        s.settimeout(1)
        if s.connect_ex(("127.0.0.1", int(port))) == 0:
            print(port, end=" ")
PY
    ) || true
    if [ -n "$listening" ]; then
      echo "demo: still listening on 127.0.0.1 port(s) $listening" >&2
    else
      echo "demo: stopped what it started (${#pids[@]} processes); nothing listens on ports ${ports[*]}"
    fi
    pids=()
  fi
}
trap stop_all EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT
trap 'echo "demo: terminated" >&2; exit 143' TERM
trap 'exit 129' HUP  # the terminal went away

started() { # started PID PORT: remember a background process
  pids+=("$1")
  ports+=("$2")
}
wait_http() { # wait_http URL PID NAME LOG [MARKER]: until URL answers 2xx while PID lives (and
  # its LOG says MARKER: a port another local user took first answers too), 30 s at most
  local deadline=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if "$py" -c "import urllib.request as u; u.urlopen('$1', timeout=1)" 2>/dev/null &&
      kill -0 "$2" 2>/dev/null && { [ -z "${5:-}" ] || grep -qF -- "$5" "$4"; }; then
      return 0
    fi
    kill -0 "$2" 2>/dev/null || { tail -n 20 "$4" >&2; echo "demo: $3 did not start (log: $(show "$4"))" >&2; return 1; }
    sleep 0.1
  done
  tail -n 20 "$4" >&2
  echo "demo: $3 did not answer $1 within 30 s (log: $(show "$4"))" >&2
  return 1
}
free_port() {
  "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

for f in "$py" "$cli"; do
  [ -x "$f" ] || { echo "demo: $f is missing; run \`make demo\` (or scripts/bootstrap.sh) first" >&2; exit 1; }
done
for tool in restic prometheus prometheus-pushgateway promtool; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is not installed; run \`make demo\`" >&2; exit 1; }
done

# --- sample data -----------------------------------------------------------------------
if [ ! -e "$demo/data/.complete" ]; then
  step "Generating sample data in $(show "$demo")/data/ (300 small text files, 4 MB of random data)"
  rm -rf "$demo/data" "$demo/data.tmp"
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

# --- secrets --------------------------------------------------------------------------------
password_file=$demo/secrets/restic-password
(
  umask 077
  mkdir -p "$demo/secrets"
  chmod 0700 "$demo/secrets"
  if [ ! -s "$password_file" ]; then
    step "Creating a random repository password in $(show "$password_file") (mode 0600)"
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
webhook_secret=$demo/secrets/demo-webhook.whsec
if [ ! -s "$webhook_secret" ]; then
  step "Generating the result webhook's signing secret: restic-runner keys generate whsec (mode 0600)"
  "$cli" keys generate whsec --out "$webhook_secret"
fi
port=${DEMO_PORT:-$(free_port)}
url=http://127.0.0.1:$port
"$py" - "$port" <<'PY' || { echo "demo: DEMO_PORT=$port: 127.0.0.1:$port is in use (unset DEMO_PORT for a free port)" >&2; exit 1; }
import socket
import sys

with socket.socket() as s:  # what `serve` will do; it must not find the address taken
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
PY

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

# A job that fails: its path does not exist ("Fatal: all target directories/files do not exist").
[jobs.broken]
kind = "backup"
paths = [$(toml_str "$demo/does-not-exist")]
tags = ["demo"]

[server]
bind = "127.0.0.1:$port"

[[clients]]
name = "demo"
secret_file = $(toml_str "$client_secret")
jobs = ["nightly", "broken"]
EOF
mv "$config.tmp" "$config"
echo "demo: config $(show "$config")"

# --- repository -------------------------------------------------------------------------------
if [ ! -e "$demo/repo/config" ]; then
  step "Initialising the restic repository $(show "$demo")/repo (plain \`restic init\`: restic-runner never inits)"
  rm -rf "$demo/repo"
  RESTIC_REPOSITORY=$demo/repo RESTIC_PASSWORD_FILE=$password_file RESTIC_CACHE_DIR=$demo/cache \
    restic init
fi

# --- runs -------------------------------------------------------------------------------------
step "Run 1: restic-runner run nightly (backup, then forget --keep-last 5)"
"$cli" run nightly --config "$config"

step "Changing the data: appending to notes/changelog.txt, adding notes/added-<time>.txt"
now=$(date -u +%Y%m%dT%H%M%SZ)
echo "change at $now" >>"$demo/data/notes/changelog.txt"
echo "added at $now" >"$demo/data/notes/added-$now.txt"

step "Run 2: restic-runner run nightly again (incremental: only the changes are new)"
"$cli" run nightly --config "$config"

step "restic-runner status"
"$cli" status --config "$config"

# --- monitoring: Pushgateway, Prometheus, a webhook receiver ------------------------------------
rm -rf "$mon"
mkdir -p "$mon"
pg_port=$(free_port)
prom_port=$(free_port)
pg_url=http://127.0.0.1:$pg_port
prom_url=http://127.0.0.1:$prom_port

step "Starting Debian's Pushgateway on $pg_url (persistence: $(show "$mon")/pushgateway.db)"
prometheus-pushgateway --web.listen-address="127.0.0.1:$pg_port" \
  --persistence.file="$mon/pushgateway.db" --persistence.interval=1s \
  >"$mon/pushgateway.log" 2>&1 &
started "$!" "$pg_port"
wait_http "$pg_url/-/ready" "$!" Pushgateway "$mon/pushgateway.log"
echo "  $(prometheus-pushgateway --version 2>&1 | head -n 1)"

step "The alert rules: deploy/prometheus/restic-runner.rules.yml"
rules=deploy/prometheus/restic-runner.rules.yml
for_duration=$("$py" - "$rules" <<'PY'
import sys

import yaml

for group in yaml.safe_load(open(sys.argv[1]))["groups"]:
    for rule in group["rules"]:
        if rule.get("alert") == "ResticRunnerLastRunFailed":
            print(rule.get("for", "0s"))
            sys.exit(0)
sys.exit("ResticRunnerLastRunFailed is not in " + sys.argv[1])
PY
)
case $for_duration in
  0 | 0s | 0m)
    cp "$rules" "$mon/restic-runner.rules.yml"
    echo "  ResticRunnerLastRunFailed has no \`for:\`: it fires at the first evaluation that sees the"
    echo "  failure, so Prometheus loads the shipped rules unchanged (a copy in $(show "$mon")/)"
    ;;
  *)
    sed -E 's/^([[:space:]]+for:)[[:space:]]*[0-9a-z]+[[:space:]]*$/\1 5s/' "$rules" >"$mon/restic-runner.rules.yml"
    echo "  ResticRunnerLastRunFailed waits \`for: $for_duration\`: Prometheus loads a DEMO COPY of the rules,"
    echo "  $(show "$mon")/restic-runner.rules.yml, with every \`for:\` shortened to 5s (the shipped file is unchanged)"
    ;;
esac

step "Prometheus's config: deploy/prometheus/prometheus.example.yml with loopback targets, 1s intervals"
sed -e 's/^\([[:space:]]*scrape_interval:\).*/\1 1s/' \
  -e 's/^\([[:space:]]*evaluation_interval:\).*/\1 1s/' \
  -e "s/pushgateway\.example\.net:9091/127.0.0.1:$pg_port/" \
  -e "s/backup-host\.example\.net:8080/127.0.0.1:$port/" \
  deploy/prometheus/prometheus.example.yml >"$mon/prometheus.yml"
for want in "127.0.0.1:$pg_port" "127.0.0.1:$port" "scrape_interval: 1s" "evaluation_interval: 1s" \
  "honor_labels: true" "- restic-runner.rules.yml"; do
  grep -qF -- "$want" "$mon/prometheus.yml" ||
    { echo "demo: $(show "$mon")/prometheus.yml lacks '$want': has prometheus.example.yml changed?" >&2; exit 1; }
done
promtool check config "$mon/prometheus.yml" | sed '/^[[:space:]]*$/d; s/^/  /'
diff -u deploy/prometheus/prometheus.example.yml "$mon/prometheus.yml" | tail -n +3 | grep '^[-+]' | sed 's/^/  /' || true

step "Starting Debian's Prometheus on $prom_url (storage: $(show "$mon")/prometheus-data)"
prometheus --config.file="$mon/prometheus.yml" --storage.tsdb.path="$mon/prometheus-data" \
  --web.listen-address="127.0.0.1:$prom_port" \
  >"$mon/prometheus.log" 2>&1 &
started "$!" "$prom_port"
wait_http "$prom_url/-/ready" "$!" Prometheus "$mon/prometheus.log"
echo "  $(prometheus --version 2>&1 | head -n 1)"

step "Starting a webhook receiver that verifies signatures with the standardwebhooks library"
"$py" scripts/demo_webhook_receiver.py "$webhook_secret" "$mon/receiver.port" "$mon/webhooks.jsonl" \
  >"$mon/receiver.log" 2>&1 &
receiver_pid=$!
pids+=("$receiver_pid")  # its port comes below
for _ in $(seq 1 100); do
  [ -s "$mon/receiver.port" ] && break
  kill -0 "$receiver_pid" 2>/dev/null || break
  sleep 0.1
done
[ -s "$mon/receiver.port" ] || {
  tail -n 20 "$mon/receiver.log" >&2
  echo "demo: the webhook receiver did not start (log: $(show "$mon/receiver.log"))" >&2
  exit 1
}
receiver_port=$(cat "$mon/receiver.port")
ports+=("$receiver_port")
touch "$mon/webhooks.jsonl"
echo "  http://127.0.0.1:$receiver_port/ (scripts/demo_webhook_receiver.py; secret $(show "$webhook_secret"))"

# The service's config: the demo's, plus where to report.
{
  cat "$config"
  cat <<EOF

# --- added for the monitored part of the demo (scripts/demo.sh) ---
[notify.pushgateway]
url = "$pg_url"

[notify.webhooks.demo]
url = "http://127.0.0.1:$receiver_port/"
secret_file = $(toml_str "$webhook_secret")
EOF
} >"$monitored.tmp"
mv "$monitored.tmp" "$monitored"

step "Serving the HTTP API on $url (gunicorn, 2 workers)"
echo "  config $(show "$monitored"): $(show "$config") plus [notify] for the Pushgateway and the receiver"
server_log=$demo/server.log
"$cli" serve --config "$monitored" >"$server_log" 2>&1 &
started "$!" "$port"
wait_http "$url/healthz" "$!" "restic-runner serve" "$server_log" "serving on $url "
"$py" -c "import urllib.request as u, json; print(json.load(u.urlopen('$url/readyz')))"
echo "demo: listening on 127.0.0.1: API $port, Pushgateway $pg_port, Prometheus $prom_port, webhook receiver $receiver_port"

step "Run 3: a signed trigger through the API, followed to the end"
echo "\$ restic-runner trigger $url nightly --secret-file $(show "$client_secret") --tag api --wait 120"
"$cli" trigger "$url" nightly --secret-file "$client_secret" --tag api --wait 120

step "Run 4: a signed trigger of the job that fails (job broken: its path does not exist)"
echo "\$ restic-runner trigger $url broken --secret-file $(show "$client_secret") --wait 120"
rc=0
"$cli" trigger "$url" broken --secret-file "$client_secret" --wait 120 || rc=$?
[ "$rc" != 0 ] || { echo "demo: job broken succeeded; it should have failed" >&2; exit 1; }
echo "  (exit $rc: trigger --wait exits with the run's exit code)"
run_ended_at=$(date +%s.%N)  # trigger --wait returns within ~50 ms of the run's end

step "The result webhooks the receiver got, each checked with standardwebhooks' Webhook.verify"
"$py" - "$mon/webhooks.jsonl" <<'PY'
import json
import sys
import time
from pathlib import Path

events = Path(sys.argv[1])
deadline = time.monotonic() + 30
while True:
    records = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    if any(r.get("type") == "run.failed" and r.get("job") == "broken" for r in records):
        break
    if time.monotonic() > deadline:
        sys.exit("demo: no run.failed webhook for job broken within 30 s")
    time.sleep(0.1)
bad = [r for r in records if not r["verified"]]
for r in records:
    if r["verified"]:
        error = f" · error: {r['error']}" if r.get("error") else ""
        print(f"  {r['type']}: job {r['job']}, run {r['run_id']}, exit {r['exit_code']}{error}")
        print(f"    webhook-id {r['webhook_id']}: signature verified (standardwebhooks, v1 HMAC-SHA256)")
    else:
        print(f"  webhook-id {r['webhook_id']}: signature NOT verified: {r['reason']}")
if bad:
    sys.exit(f"demo: {len(bad)} webhook(s) failed verification")
PY

step "Waiting for Prometheus to report ResticRunnerLastRunFailed firing for job broken"
echo "\$ curl -s $prom_url/api/v1/alerts"
"$py" - "$prom_url" "$pg_url" "$run_ended_at" <<'PY'
import json
import sys
import time
import urllib.request

prom, pushgateway, run_ended_at = sys.argv[1], sys.argv[2], float(sys.argv[3])


def alerts() -> list[dict]:
    with urllib.request.urlopen(prom + "/api/v1/alerts", timeout=5) as response:
        return list(json.load(response)["data"]["alerts"])


deadline = time.monotonic() + 60
while True:
    current = alerts()
    firing = [a for a in current if a["labels"].get("alertname") == "ResticRunnerLastRunFailed"
              and a["labels"].get("job_name") == "broken" and a["state"] == "firing"]
    if firing:
        break
    if time.monotonic() > deadline:
        print(json.dumps(current, indent=2))
        sys.exit("demo: ResticRunnerLastRunFailed did not fire within 60 s")
    time.sleep(0.2)
print(f"  firing {time.time() - run_ended_at:.1f} s after the run ended (scrape and evaluation every 1 s):")
print("\n".join("  " + line for line in json.dumps(firing[0], indent=2).splitlines()))
print("  every alert Prometheus has now:")
for a in sorted(current, key=lambda a: (a["labels"]["alertname"], a["labels"].get("job_name", ""))):
    print(f"    {a['labels']['alertname']}{{job_name={a['labels'].get('job_name', '-')}}}: {a['state']}")
with urllib.request.urlopen(pushgateway + "/api/v1/metrics", timeout=5) as response:
    groups = json.load(response)["data"]
names = sorted(f"{g['labels'].get('job')}/{g['labels'].get('hostname')}/{g['labels'].get('job_name')}"
               for g in groups)
print("  Pushgateway groups (job/hostname/job_name): " + ", ".join(names))
PY

step "restic-runner status"
"$cli" status --config "$monitored"

step "Stopping the service, Prometheus, the Pushgateway and the receiver"
stop_all

step "Next, try"
echo "  # start the job and print its run id (the server runs it; the request is signed)"
echo "  .venv/bin/restic-runner serve --config $(show "$config") &"
echo "  .venv/bin/restic-runner trigger $url nightly --secret-file $(show "$client_secret") --wait 600"
echo "  # with curl and a bearer token (restic-runner keys generate token --out FILE, then a"
echo "  # [[clients]] entry with token_file = FILE):"
echo "  curl -sS -X POST -H \"Authorization: Bearer \$(cat FILE)\" $url/trigger/nightly"
echo "  curl -sS -H \"Authorization: Bearer \$(cat FILE)\" $url/runs/<run_id>/result"
echo "  curl -sS $url/metrics"
echo "  # monitoring: deploy/README.md (rules, the scrape config, the dashboard)"

step "Where things are"
d=$(show "$demo")
echo "  run history (SQLite):      $d/state/history.db"
echo "  run logs (masked):         $d/state/logs/<job>/<run id>.log"
echo "  last run record:           $d/state/last-nightly.json, $d/state/last-broken.json"
echo "  repository:                $d/repo   (password: $d/secrets/restic-password)"
echo "  config:                    $(show "$config")  (the served one: $(show "$monitored"))"
echo "  Prometheus, Pushgateway:   $d/monitoring/ (prometheus.yml, the rules, data, logs)"
echo "  webhooks received:         $d/monitoring/webhooks.jsonl"
echo "  try: .venv/bin/restic-runner status --json --config $(show "$config")"
echo "       RESTIC_REPOSITORY=$d/repo RESTIC_PASSWORD_FILE=$d/secrets/restic-password restic snapshots"
if [ -d "$demo/state" ]; then
  echo
  echo "$d/state/ now holds:"
  (cd "$demo/state" && find . -maxdepth 2 -not -name . | sort | sed 's/^\.\//  /')
fi

echo "demo: done in $((SECONDS - started_at)) s"
