#!/usr/bin/env bash
# Build Horovod 0.28.1 from its sdist against the venv's torch, and install it.
#
# Why from source: Horovod's last release hard-codes C++14 for its torch extension, and
# torch >= 2.1 headers need C++17. We patch the two CMAKE_CXX_STANDARD lines to 17 and build with
# no build isolation (so it compiles against the torch that is installed). The finished wheel is
# cached under $RECSPARK_CACHE (default ~/.cache/recspark), keyed by the torch and python versions
# and the GPU option, so only the first set-up on a machine pays for the build (~10 min on 2 cores).
#
# Usage: scripts/build_horovod.sh PYTHON    (PYTHON: the venv's python)
set -euo pipefail
PY=${1:?usage: build_horovod.sh PYTHON}
HVD_VERSION=0.28.1
CACHE=${RECSPARK_CACHE:-$HOME/.cache/recspark}
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')
PY_TAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 \
   && "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  GPU=nccl; export HOROVOD_GPU_OPERATIONS=NCCL
else
  GPU=cpu
fi
WHEEL_DIR="$CACHE/horovod-$HVD_VERSION-torch$TORCH_VERSION-$PY_TAG-$GPU"

if "$PY" -c 'import horovod.torch' >/dev/null 2>&1; then
  echo "horovod: already installed"; exit 0
fi
if ! ls "$WHEEL_DIR"/horovod-*.whl >/dev/null 2>&1; then
  echo "horovod: building $HVD_VERSION from source for torch $TORCH_VERSION ($GPU); first time only, takes minutes"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PY" -m pip download --quiet --no-deps --no-binary :all: "horovod==$HVD_VERSION" -d "$work"
  tar -xzf "$work/horovod-$HVD_VERSION.tar.gz" -C "$work"
  src="$work/horovod-$HVD_VERSION"
  sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' \
    "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
  grep -q 'CMAKE_CXX_STANDARD 17' "$src/horovod/torch/CMakeLists.txt"
  # cmake >= 3.27 refuses projects declaring a minimum below 3.5; allow it, harmless on older cmake.
  export CMAKE_POLICY_VERSION_MINIMUM=3.5
  export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
         HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=-j"$(nproc)"
  mkdir -p "$WHEEL_DIR"
  "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WHEEL_DIR" "$src"
fi
"$PY" -m pip install --quiet --no-deps "$WHEEL_DIR"/horovod-*.whl
# Horovod's own runtime needs (not its [spark] extra, which pins pyarrow < 11).
"$PY" -m pip install --quiet cloudpickle psutil pyyaml packaging
"$PY" -c 'import horovod.torch as hvd; assert hvd.gloo_built(), "horovod built without gloo"; print("horovod: ok, gloo built, nccl built:", hvd.nccl_built())'
