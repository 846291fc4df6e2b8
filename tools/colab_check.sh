#!/usr/bin/env bash
# Colab-style check: the notebooks run with nothing but the released package and its runtime requirements.
# Builds the wheel, installs it (no dev extras) into a fresh virtualenv with only what a notebook runner needs
# (ipykernel, nbconvert), copies nbs/index.ipynb, 00_config and 05_loss to a folder outside the repository (so their
# export cell finds no ../settings.ini and nothing can import the source tree) and executes them there.
#   bash tools/colab_check.sh [notebook names...]      (default: index 00_config 05_loss)
# TORCH_SPEC (default torch==2.13.0) and TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu) choose the
# torch wheel; pip's cache is reused between runs. LOCK (default constraints.txt, see tools/lock.py) pins every other
# package to the versions the tests use, so that a library release cannot fail CI; LOCK= (empty) installs what the
# package's ranges resolve to today, as a user's `pip install dpo_imdb` does.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$(date +%s)
notebooks=("$@"); [ ${#notebooks[@]} -gt 0 ] || notebooks=(index 00_config 05_loss)
work=$(mktemp -d "${TMPDIR:-/tmp}/dpo_imdb_colab.XXXXXX")
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
export PYTHONNOUSERSITE=1

echo "-- building the wheel"
had_build=$([ -e "$repo/build" ] && echo 1 || true)
python -m build --wheel --outdir "$work/dist" "$repo" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
[ -n "$had_build" ] || rm -rf "$repo/build"   # setuptools' scratch folder, if this made it
wheel=$(ls "$work"/dist/*.whl)

lock=${LOCK-$repo/constraints.txt}
echo "-- fresh virtualenv: ${TORCH_SPEC:-torch==2.13.0}, then $(basename "$wheel") (no extras), ipykernel, nbconvert, ${lock:+locked by $(basename "$lock")}${lock:-unlocked}"
python3 -m venv "$work/venv"
export PATH="$work/venv/bin:$PATH"       # `python` and `jupyter` (and so the notebook kernel) are the venv's
python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
python -m pip install -q "$wheel" ipykernel nbconvert ${lock:+-c "$lock"}
installed=$(cd "$work" && python -c 'import dpo_imdb; print(dpo_imdb.__file__)')
case "$installed" in "$work/venv/"*) ;; *) echo "dpo_imdb imported from $installed, not from the wheel"; exit 1;; esac
if python -c 'import nbdev' 2>/dev/null; then echo "nbdev is installed: the check must run without dev extras"; exit 1; fi
echo "   $(python -m pip list 2>/dev/null | grep -icE '^[a-z]') packages; dpo_imdb from the wheel, no nbdev"
install_done=$(date +%s)

mkdir -p "$work/nbs" "$work/out"
for nb in "${notebooks[@]}"; do cp "$repo/nbs/$nb.ipynb" "$work/nbs/"; done
cd "$work/nbs"
for nb in "${notebooks[@]}"; do
  t=$(date +%s)
  if ! jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=900 \
        --ExecutePreprocessor.kernel_name=python3 --output-dir "$work/out" "$nb.ipynb" > "$work/$nb.log" 2>&1; then
    tail -n 40 "$work/$nb.log"
    echo "FAILED: nbs/$nb.ipynb does not run with only the package installed"
    exit 1
  fi
  echo "   nbs/$nb.ipynb ran in $(( $(date +%s) - t )) s"
done
echo "Colab check passed: build + install $(( install_done - start )) s, total $(( $(date +%s) - start )) s"
