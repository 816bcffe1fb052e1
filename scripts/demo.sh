#!/usr/bin/env bash
# The main job on the embedded default: fetch the model, build, ingest a sample corpus into a data
# directory, and answer a question with citations.
#
#   scripts/demo.sh [CORPUS_DIR] [QUESTION]
# Default corpus: ../shared/documents/markdown (real READMEs), else this repository's docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p quarry-cli
bin="${CARGO_TARGET_DIR:-target}/release/quarry"
corpus="${1:-../shared/documents/markdown}"
[ -d "$corpus" ] || corpus=docs
question="${2:-How do I extract tables from a PDF?}"
data=.quarry/demo
"$bin" --data-dir "$data" ingest "$corpus"
"$bin" --data-dir "$data" status
echo
echo "Q: $question"
"$bin" --data-dir "$data" ask "$question" --generator local --stream
