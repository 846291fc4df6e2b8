#!/usr/bin/env bash
# Colab-style check: every notebook runs top to bottom, as Colab's "Run all" runs it, with nothing but the released
# package and its runtime requirements, on the hub ids.
# Builds the wheel, installs it (no dev extras) into a fresh virtualenv with only what a notebook runner needs
# (ipykernel, nbconvert), copies the notebooks to a folder outside the repository (so their export cell finds no
# ../settings.ini and nothing can import the source tree) and executes them there, two at a time, every cell included
# (`#| slow` and `#| gpu` too: Colab ignores the flags).
# The hub: where DPO_IMDB_DATA_DIR, DPO_IMDB_GPT2_DIR and DPO_IMDB_DISTILBERT_DIR name the IMDb parquet files and
# GPT-2's and DistilBERT's configs and tokenizers, tools/hf_cache.py fills a Hugging Face cache from them in a temporary
# HF_HOME (random weights of the real shapes), and the notebooks run with HF_HUB_OFFLINE=1 and those variables unset:
# `gpt2`, `lvwerra/distilbert-imdb` and `stanfordnlp/imdb` resolve through the libraries' own cache code, as they do
# from the hub in Colab. Then `dpo-imdb run --preset colab --smoke` runs through the same hub ids. The check fails when
# a notebook fails, or when an output says "skipped" or that a source fell back to its offline stand-in.
# Without the variables the notebooks run on the stand-ins, and the stand-in lines are allowed.
#   bash tools/colab_check.sh [notebook names...]      (default: every notebook in nbs/)
# TORCH_SPEC (default torch==2.13.0) and TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu) choose the
# torch wheel; pip's cache is reused between runs. LOCK (default constraints.txt, see tools/lock.py) pins every other
# package to the versions the tests use, so that a library release cannot fail CI; LOCK= (empty) installs what the
# package's ranges resolve to today, as a user's `pip install dpo_imdb` does. JOBS (default 2): notebooks at once.
# KEEP=DIR keeps the executed notebooks and their logs in DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$(date +%s)
notebooks=("$@")
if [ ${#notebooks[@]} -eq 0 ]; then
  for f in nbs/*.ipynb; do b=$(basename "$f" .ipynb); case "$b" in _*|.*) ;; *) notebooks+=("$b");; esac; done
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/dpo_imdb_colab.XXXXXX")
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
export PYTHONNOUSERSITE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline

echo "-- building the wheel"
had_build=$([ -e "$repo/build" ] && echo 1 || true)
python -m build --wheel --outdir "$work/dist" "$repo" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
[ -n "$had_build" ] || rm -rf "$repo/build"   # setuptools' scratch folder, if this made it
wheel=$(ls "$work"/dist/*.whl)
# setuptools warns, and may one day drop the folder, when a package directory is shipped by accident of discovery
if grep -q "Package would be ignored" "$work/build.log"; then
  grep -B2 -A8 "Package would be ignored" "$work/build.log"; echo "setup.py's packages miss a folder the wheel ships"; exit 1
fi

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

hub=""
if [ -n "${DPO_IMDB_DATA_DIR:-}" ] && [ -n "${DPO_IMDB_GPT2_DIR:-}" ] && [ -n "${DPO_IMDB_DISTILBERT_DIR:-}" ]; then
  echo "-- a Hugging Face cache filled offline (tools/hf_cache.py): gpt2, lvwerra/distilbert-imdb, stanfordnlp/imdb"
  python "$repo/tools/hf_cache.py" "$work/hf_home"
  hub=1
else
  echo "-- no DPO_IMDB_DATA_DIR / _GPT2_DIR / _DISTILBERT_DIR: the notebooks run on the offline stand-ins"
fi
export HF_HOME="$work/hf_home" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
unset DPO_IMDB_DATA_DIR DPO_IMDB_GPT2_DIR DPO_IMDB_DISTILBERT_DIR      # the hub ids, or nothing: as in Colab
cache_done=$(date +%s)

mkdir -p "$work/nbs" "$work/out"
for nb in "${notebooks[@]}"; do cp "$repo/nbs/$nb.ipynb" "$work/nbs/"; done
cd "$work/nbs"
run_one() {   # execute one notebook; its seconds go to $work/$1.seconds, its output to $work/$1.log
  local t; t=$(date +%s)
  if jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1800 \
        --ExecutePreprocessor.kernel_name=python3 --output-dir "$work/out" "$1.ipynb" > "$work/$1.log" 2>&1; then
    echo $(( $(date +%s) - t )) > "$work/$1.seconds"
  else echo "failed" > "$work/$1.seconds"; fi
  echo "   nbs/$1.ipynb: $(cat "$work/$1.seconds") s"
}
echo "-- running ${#notebooks[@]} notebooks, ${JOBS:-2} at a time"
for nb in "${notebooks[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-2}" ]; do wait -n || true; done
  run_one "$nb" &
done
wait
notebooks_done=$(date +%s)
[ -z "${KEEP:-}" ] || { mkdir -p "$KEEP"; cp "$work"/out/*.ipynb "$work"/*.log "$KEEP"/ 2>/dev/null || true; }
failed=0
for nb in "${notebooks[@]}"; do
  if [ "$(cat "$work/$nb.seconds")" = failed ]; then
    tail -n 40 "$work/$nb.log"; echo "FAILED: nbs/$nb.ipynb does not run with only the package installed"; failed=1
  fi
done
[ $failed = 0 ] || exit 1

# no output may say "skipped", nor (with the cache) that a source fell back to its stand-in
python - "$work/out" "$hub" <<'EOF'
import json, re, sys
from pathlib import Path
bad = []
for path in sorted(Path(sys.argv[1]).glob('*.ipynb')):
    for i, cell in enumerate(json.loads(path.read_text())['cells']):
        for out in cell.get('outputs', []):
            text = ''.join(out.get('text', '')) + ''.join(out.get('data', {}).get('text/plain', ''))
            for line in text.splitlines():
                if re.search(r'\bskipped\b', line, re.I) or (sys.argv[2] and 'the offline stand-in' in line):
                    bad.append(f'{path.name} cell {i}: {line.strip()[:160]}')
if bad: sys.exit('outputs that say a check did not run on the real thing:\n' + '\n'.join(bad))
EOF

smoke_secs=""
if [ -n "$hub" ]; then
  echo "-- dpo-imdb run --preset colab --smoke, through the hub ids"
  t=$(date +%s)
  dpo-imdb run --preset colab --smoke --out "$work/colab-smoke" --wandb_mode disabled > "$work/colab-smoke.log" 2>&1 \
    || { tail -n 40 "$work/colab-smoke.log"; echo "FAILED: the colab preset's smoke run"; exit 1; }
  grep -q '"sft_steps": 2' "$work/colab-smoke/setup/manifest.json" || { echo "FAILED: the colab smoke run did no SFT"; exit 1; }
  smoke_secs=", colab smoke $(( $(date +%s) - t )) s"
fi
echo "Colab check passed: build + install $(( install_done - start )) s, cache $(( cache_done - install_done )) s," \
     "notebooks $(( notebooks_done - cache_done )) s$smoke_secs, total $(( $(date +%s) - start )) s"
