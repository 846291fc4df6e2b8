#!/usr/bin/env bash
# The prepared GPU check (what it runs and records: bench/gpu_check.py). From the repository root:
#
#   bash bench/gpu_check.sh --prepare     # once, where pip reaches PyPI and DPO_IMDB_DATA_DIR / DPO_IMDB_GPT2_DIR are
#                                         # set: fills .gpucheck/ (git-ignored, ~52 MB) with the py3.12 wheels a GPU
#                                         # image lacks (trl, datasets, nbdev and what they need), IMDb's
#                                         # train/test parquet files and GPT-2's config + tokenizer
#   bash bench/gpu_check.sh               # on the GPU machine, with .gpucheck/ beside the code: installs the wheels
#                                         # into /tmp (no network), then runs every step; results in $OUT or
#                                         # bench/gpu_check_out/gpu_check.json
#   bash bench/gpu_check.sh --only frontier  # the `gpu` preset's frontier alone, with its own budget (--frontier-budget)
#   bash bench/gpu_check.sh --cpu --smoke --frontier  # a dry run of every step on a CPU
set -euo pipefail
export GPU_CHECK_T0=$(date +%s.%N)     # the check's budget counts from here: installing the wheels counts too
cd "$(dirname "$0")/.."
CACHE=.gpucheck

if [ "${1:-}" = "--prepare" ]; then
  : "${DPO_IMDB_DATA_DIR:?set DPO_IMDB_DATA_DIR to the IMDb parquet folder}" "${DPO_IMDB_GPT2_DIR:?set DPO_IMDB_GPT2_DIR}"
  rm -rf "$CACHE"; mkdir -p "$CACHE/wheels" "$CACHE/imdb" "$CACHE/gpt2"
  # pure-Python wheels (plus watchdog/wcwidth builds for x86-64 Linux) for the GPU image's Python 3.12; the image
  # already has torch, transformers, accelerate, pyarrow, pandas, scikit-learn, matplotlib, huggingface-hub, xxhash
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d "$CACHE/wheels" trl==1.16.0 datasets==5.2.0 'dill<0.4.2,>=0.3.0' 'multiprocess<0.70.20' \
    nbdev==2.4.14 execnb==0.1.18 'fastcore>=1.14,<2' 'ghapi<2' fastgit astunparse watchdog asttokens \
    ipython ipython-pygments-lexers jedi parso matplotlib-inline pexpect ptyprocess 'prompt_toolkit<3.1.0,>=3.0.41' \
    wcwidth stack_data executing pure_eval traitlets
  # every split, unsup too (SFT and the prompts draw from train + unsup, 75,000 reviews), re-compressed (zstd level 19:
  # 43 MB for the three, where train and test alone take 41 MB as shipped) to fit a 64 MiB limit on what is copied to the GPU machine
  python3 -c 'import sys, pyarrow.parquet as pq
for split in ("train", "test", "unsup"):
    pq.write_table(pq.read_table(f"{sys.argv[1]}/{split}.parquet"), f"{sys.argv[2]}/{split}.parquet", compression="zstd",
                   compression_level=19)' "$DPO_IMDB_DATA_DIR" "$CACHE/imdb"
  cp "$DPO_IMDB_GPT2_DIR"/*.json "$DPO_IMDB_GPT2_DIR"/*.txt "$CACHE/gpt2/"
  echo "$(git rev-parse --short HEAD)$(git status --porcelain --untracked-files=no | grep -q . && echo +changes)" \
    > "$CACHE/commit"                    # the code's commit, for a GPU machine whose copy has no git history
  grep -qx '/.gpucheck/' .git/info/exclude 2>/dev/null || echo '/.gpucheck/' >> .git/info/exclude
  du -sh "$CACHE"; exit 0
fi

if [ -d "$CACHE/wheels" ] && ! python3 -c 'import trl, datasets, nbdev' 2>/dev/null; then
  SITE=/tmp/gpucheck-site
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$CACHE"/wheels/*.whl
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d "$CACHE/imdb" ] && export DPO_IMDB_DATA_DIR="${DPO_IMDB_DATA_DIR:-$PWD/$CACHE/imdb}"
[ -d "$CACHE/gpt2" ] && export DPO_IMDB_GPT2_DIR="${DPO_IMDB_GPT2_DIR:-$PWD/$CACHE/gpt2}"
python3 -c 'import pyarrow, datasets, trl; print("pyarrow", pyarrow.__version__, "datasets", datasets.__version__, "trl", trl.__version__)'
exec python3 bench/gpu_check.py "$@"
