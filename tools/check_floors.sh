#!/usr/bin/env bash
# The oldest versions `pip install dpo_imdb` allows, tested: a fresh virtualenv with every runtime requirement of
# settings.ini installed at its floor (`pkg>=X` -> `pkg==X`; torch stays the CPU wheel the lock uses), then the tests
# that touch each of those packages: real IMDb through datasets/pandas/pyarrow, the models and generation
# (transformers), trl's DPOTrainer on saved pairs, a whole run with W&B offline, the frontier's test preset, the
# model card and push, accelerate's config files, and that every installed version lies inside its declared range.
#
#   bash tools/check_floors.sh [VENV]      (default VENV: .floors-venv; about 2.5 minutes on 2 cores with pip's cache)
#
# A floor that the resolver refuses, or that installs and then fails, is a requirement to raise in settings.ini.
# .ci/run runs it, after the docs check.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.floors-venv}
floors=$(mktemp)
python3 - "$floors" <<'EOF'
import configparser, shlex, sys
from packaging.requirements import Requirement
cp = configparser.ConfigParser(delimiters=['=']); cp.read('settings.ini')
lines = []
for r in map(Requirement, shlex.split(cp['DEFAULT']['requirements'])):
    if r.name == 'torch': continue                             # the CPU wheel below: any other pulls GBs of CUDA
    low = [s.version for s in r.specifier if s.operator == '>=']
    if not low: sys.exit(f'{r.name}: no >= floor in settings.ini')
    lines.append(f'{r.name}=={low[0]}')
open(sys.argv[1], 'w').write('\n'.join(lines) + '\n')
print('floors:', ' '.join(lines))
EOF
python3 -m venv "$venv"
source "$venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}   # the CPU wheel
python -m pip install -q -c "$floors" -e ".[dev]"
python -m pip check
rm -f "$floors"

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
# the real-data tests find IMDb and the model assets only through DPO_IMDB_DATA_DIR, DPO_IMDB_GPT2_DIR and
# DPO_IMDB_DISTILBERT_DIR, taken from the environment (.ci/run sets them); without them those tests skip
python -m pytest -n 2 --dist loadfile -q -p no:cacheprovider \
    tests/test_project.py::test_installed_packages_meet_the_declared_requirements \
    tests/test_real_data.py \
    tests/test_reliability.py::test_wandb_offline_never_logs_in_reaches_out_or_writes_the_key \
    tests/test_cli.py::test_a_plain_trl_dpo_trainer_accepts_the_pairs \
    tests/test_cli.py::test_the_model_card_is_written_and_parses \
    tests/test_cli.py::test_push_uploads_model_tokenizer_card_and_pairs \
    tests/test_frontier.py::test_frontier_test_preset \
    tests/test_distributed.py::test_accelerate_config_files_are_accepted
python -c "import importlib.metadata as m; print('tested at:', ', '.join(f'{p} {m.version(p)}' for p in ('torch', 'numpy', 'scipy', 'pandas', 'pyarrow', 'scikit-learn', 'matplotlib', 'huggingface_hub', 'transformers', 'tokenizers', 'safetensors', 'datasets', 'accelerate', 'trl', 'wandb', 'tqdm', 'fastcore', 'ipywidgets')))"
