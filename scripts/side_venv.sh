#!/usr/bin/env bash
# A virtual environment beside the project's .venv, for tools whose pinned dependencies clash
# with the project's (Airflow: scripts/setup_airflow.sh; the JVM-free Delta readers:
# scripts/setup_readers.sh). Installs the pinned packages, checks them with an import, and
# records them in a stamp file: a second run with the same pins does nothing.
#
# Usage: bash scripts/side_venv.sh PYTHON VENV STAMP "PINNED PACKAGES" "PYTHON IMPORT CHECK"
set -euo pipefail

PYTHON="$1" VENV="$2" STAMP="$3" WANT="$4" CHECK="$5"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
    echo "== $VENV is up to date ($WANT)"
    touch "$STAMP"  # newer than the calling script, for make
    exit 0
fi

echo "== setting up $VENV ($WANT)"
start=$(date +%s)
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086  # WANT is a list of requirement specifiers
"$VENV/bin/python" -m pip install --quiet $WANT
"$VENV/bin/python" -c "$CHECK"
echo "$WANT" > "$STAMP"
echo "== $VENV ready in $(( $(date +%s) - start )) s"
