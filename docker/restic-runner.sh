#!/bin/sh
# The image's `restic-runner` (first on PATH): the real one (/opt/restic-runner/bin) as the
# service user, as the /bin/<name> shims run, so that a root `docker exec c restic-runner …`
# runs jobs, hooks and restic as the service does; RESTIC_RUNNER_RUN_AS_ROOT=ON keeps root.
# A restore keeps what restoring owners takes (as-service-user). docs/deployment.md, "Users".
exec /usr/local/lib/restic-runner/as-service-user /opt/restic-runner/bin/restic-runner "$@"
