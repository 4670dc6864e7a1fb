#!/usr/bin/env bash
# Create .tools/airflow-venv: Apache Airflow and its HTTP provider for tests/airflow/, in a
# virtual environment of their own (Airflow's hundreds of pins never meet the project's .venv).
#
# Pins: apache-airflow==3.3.2 and apache-airflow-providers-http==6.3.0, the versions issue 16's
# findings were made with. Airflow's own constraints file lives on GitHub, which a PyPI-only
# network cannot reach, so every other package is pinned by tests/airflow/constraints.txt: a
# `pip freeze` of an install that passed tests/airflow (regenerate it with --refreeze).
#
# Idempotent: silent and fast (a stamp compare) once done; redone when this script or the
# constraints change. Usage: scripts/airflow-venv.sh [--refreeze]     (from any directory)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=.tools/airflow-venv
constraints=tests/airflow/constraints.txt
stamp=$venv/.airflow-venv-stamp
pins=(apache-airflow==3.3.2 apache-airflow-providers-http==6.3.0)

refreeze=0
case "${1:-}" in
  "") ;;
  --refreeze) refreeze=1 ;;
  *) echo "usage: $0 [--refreeze]" >&2; exit 2 ;;
esac

log() { echo "airflow-venv: $*" >&2; }

fingerprint() { cat "$0" "$constraints" 2>/dev/null | sha256sum | cut -d' ' -f1; }
wanted=$(fingerprint || true)
if [ "$refreeze" = 0 ] && [ -x "$venv/bin/airflow" ] && [ -e "$stamp" ] &&
  [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi

py=""
for candidate in python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null &&
    "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' \
      2>/dev/null; then
    py=$candidate
    break
  fi
done
[ -n "$py" ] || { log "Airflow 3.3 needs Python 3.10 to 3.13"; exit 1; }

log "creating $venv with $py ($("$py" --version 2>&1)): ${pins[*]}"
rm -rf "$venv"
mkdir -p .tools
"$py" -m venv "$venv"
constraint_args=()
if [ "$refreeze" = 0 ] && [ -s "$constraints" ]; then constraint_args=(-c "$constraints"); fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "${constraint_args[@]}" \
  "${pins[@]}"
if [ "$refreeze" = 1 ]; then
  {
    echo "# pip freeze of .tools/airflow-venv (scripts/airflow-venv.sh --refreeze): what pip"
    echo "# resolved for the two pins, in place of Airflow's constraints file (on GitHub, which a"
    echo "# PyPI-only network cannot reach). tests/airflow/ passed with exactly these."
    "$venv/bin/python" -m pip freeze --disable-pip-version-check --exclude-editable
  } >"$constraints"
  wanted=$(fingerprint)
  log "wrote $constraints"
fi
echo "$wanted" >"$stamp"
