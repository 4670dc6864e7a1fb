#!/bin/sh
# Start a job with a bearer token (a [[clients]] entry with token_file on the server), then
# follow it. The token is read from a file and handed to curl as a header file on stdin
# (`-H @-`), so it never appears in curl's arguments (`ps`, /proc/<pid>/cmdline) or in shell
# history. (`-H "Authorization: Bearer $(cat file)"` would put it in curl's argv.)
set -eu
URL=${URL:-http://127.0.0.1:8080}
TOKEN_FILE=${TOKEN_FILE:-/etc/restic-runner/cron.token}

# 202 with {"run_id": ..., "links": {...}}; ?wait=20 would return the final record if it ends sooner
printf 'Authorization: Bearer %s\n' "$(cat "$TOKEN_FILE")" |
  curl -sS -X POST -H @- -H 'Content-Type: application/json' \
       -d '{"params": {"tags": ["manual"]}}' "$URL/trigger/nightly"
echo
# then, the same way: ... | curl -sS -H @- "$URL/runs/<run_id>/result"   (404 until it ended)
