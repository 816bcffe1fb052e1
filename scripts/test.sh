#!/usr/bin/env bash
# The whole test suite: fetches the models if needed, then runs every crate's tests, including the
# real-model and SciFact-subset tests (they read ../shared, or $QUARRY_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."
export QUARRY_SHARED="${QUARRY_SHARED:-$(cd .. && pwd)/shared}"
bash scripts/setup.sh
cargo test --workspace
