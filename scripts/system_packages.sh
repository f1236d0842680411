#!/usr/bin/env bash
# Debian packages recspark uses from outside PyPI and Maven Central, installed when missing.
#
# - libopenblas0-serial: a native BLAS and LAPACK for Spark MLlib (ALS). Spark's netlib binding
#   (dev.ludovic.netlib) loads the system's libblas.so.3 / liblapack.so.3 when there is one and
#   otherwise computes in Java: measured here, ALS (rank 128) 2.2x faster with it. The serial
#   build, because Spark already runs one task per core: the threaded build (libopenblas0-pthread)
#   oversubscribes the cores and made ALS 2x slower than Java (unless OPENBLAS_NUM_THREADS=1).
# - redis-server: the online export's store; the tests start their own on a loopback port.
# - chromium: the tests render the run report in it, headless.
#
# Installing needs root and apt-get (as on this project's machines and CI). Elsewhere it names
# what is missing and fails; RECSPARK_SKIP_SYSTEM_PACKAGES=1 goes on without them (ALS then runs
# on Java BLAS, slower; the tests that need them fail).
#
# Usage: scripts/system_packages.sh
set -euo pipefail
PACKAGES=(libopenblas0-serial redis-server chromium)
missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: ${PACKAGES[*]} present"; exit 0
fi
if [ "${RECSPARK_SKIP_SYSTEM_PACKAGES:-0}" = 1 ]; then
  echo "system packages: skipping ${missing[*]} (RECSPARK_SKIP_SYSTEM_PACKAGES=1)" >&2; exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system packages: ${missing[*]} missing; install them (Debian: apt-get install" \
    "${missing[*]}) or set RECSPARK_SKIP_SYSTEM_PACKAGES=1" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "system packages: installed ${missing[*]}"
