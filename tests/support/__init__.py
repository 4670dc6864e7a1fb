"""The test suite's library. Test modules and conftest.py files import from here, and only from
here: no test module or conftest is imported by another file. One job per module:

- `paths`: the repository, `restic-runner`, the real restic/rclone/Pushgateway binaries.
- `workspace`: restic repository templates, source data, `Workspace` (a test's config, its CLI).
- `secrets`: the canary secret, 0600 secret files, the common encodings of a leak.
- `config`: configurations parsed in-process (`parse_minimal`, `config_error`).
- `processes`: /proc, free loopback ports, `wait_until`, stopping processes, the umask.
- `service`: `restic-runner serve` under gunicorn, API clients, the API's test client.
- `receivers`: scripted HTTP receivers (webhooks, healthchecks).
- `pushgateway`: a real Pushgateway; `prometheus`: a real Prometheus with the shipped rules;
  `smtp`: aiosmtpd SMTP servers; `rest_server`: rclone's
  restic REST server.
- `runs`: runs made in-process on a real history (old ones, delivered or pending; one another
  live process holds the lock of), a target that never delivers.
- `faults`, `filesystems`: the fault matrix's five properties and its faults.
- `leaks`, `leak_scenario`: the leak suite's canaries and scanners, and its deployment.
- `fuzzing`: hypothesis settings, hang deadlines, the fuzzers' service.
- `peer`: restic-backup-helper 2.14.2's scripts installed with their paths rewritten, run for
  real; `compose`: its compose files read and interpolated; `composeenv`: its three compose
  environments made runnable here; `envmode`: `restic-runner` in environment mode;
  `sidebyside`: the peer and restic-runner on one repository (tests/compat/).
- `podman`: the built image under podman (`make image-test`), restic on what it wrote;
- `helm`: the chart rendered by Helm's engine; `metrics_contract`: metric names, promtool;
  `openapi`: the OpenAPI document's schemas as JSON Schema.

tests/README.md says how the suite is laid out and how to run part of it."""
