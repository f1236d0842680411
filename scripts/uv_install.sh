#!/usr/bin/env bash
# Install packages into a virtual environment with uv (pinned here), which links the packages
# from its cache instead of unpacking every wheel again: the project's environment (torch's CUDA
# wheels, several GB) installs in about 26 s from a warm cache, against 95 s with pip
# (docs/benchmarks/setup-and-tests.md). uv resolves the same pinned set as pip.
#
# Usage: bash scripts/uv_install.sh VENV_PYTHON ARGS...   (ARGS as for `pip install`)
set -euo pipefail
UV_VERSION="0.13.8"
PY=${1:?usage: uv_install.sh VENV_PYTHON ARGS...}
shift
UV="$(dirname "$PY")/uv"
if ! "$UV" --version 2>/dev/null | grep -qx "uv $UV_VERSION"; then
  "$PY" -m pip install --quiet "uv==$UV_VERSION"
fi
# pip's settings that uv reads under its own names
if [[ -n "${PIP_FIND_LINKS:-}" && -z "${UV_FIND_LINKS:-}" ]]; then export UV_FIND_LINKS="$PIP_FIND_LINKS"; fi
if [[ -n "${PIP_INDEX_URL:-}" && -z "${UV_INDEX_URL:-}" ]]; then export UV_INDEX_URL="$PIP_INDEX_URL"; fi
exec "$UV" pip install --quiet --python "$PY" "$@"
