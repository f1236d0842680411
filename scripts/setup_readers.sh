#!/usr/bin/env bash
# Creates .venv-readers: the JVM-free readers of recspark's Delta tables, in their own virtual
# environment, as an analyst or a downstream service would have them.
#
# delta-rs (the `deltalake` package) needs pyarrow >= 21 for pandas, which clashes with the
# project's pyarrow 14 (Petastorm), so these never go into .venv. tests/test_readers.py reads every
# table with them; docs/guides/analysts.md has the recipes.
#
# Usage: bash scripts/setup_readers.sh [PYTHON] [VENV_DIR]   (defaults: python3, .venv-readers)
# Idempotent: does nothing when the stamp file records the same pinned versions.
set -euo pipefail

PYTHON="${1:-python3}"
VENV="${2:-.venv-readers}"
WANT="deltalake==1.6.6 pyarrow==26.0.1 pandas==3.1.1 polars==2.1.0 duckdb==2.0.1"
exec bash "$(dirname "$0")/side_venv.sh" "$PYTHON" "$VENV" "$VENV/.recspark-readers-setup" "$WANT" \
    "import deltalake, duckdb, pandas, polars, pyarrow"
