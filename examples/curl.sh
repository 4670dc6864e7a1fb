#!/bin/sh
# Start a job with a bearer token (a [[clients]] entry with token_file on the server), then
# follow it. The token is read from a file so it never appears in `ps` or shell history.
set -eu
URL=${URL:-http://127.0.0.1:8080}
TOKEN_FILE=${TOKEN_FILE:-/etc/restic-runner/cron.token}
auth="Authorization: Bearer $(cat "$TOKEN_FILE")"

# 202 with {"run_id": ..., "links": {...}}; ?wait=20 would return the final record if it ends sooner
curl -sS -X POST -H "$auth" -H 'Content-Type: application/json' \
     -d '{"params": {"tags": ["manual"]}}' "$URL/trigger/nightly"
echo
# then: curl -sS -H "$auth" "$URL/runs/<run_id>/result"   (404 until the run has ended)
