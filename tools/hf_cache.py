#!/usr/bin/env python
"""Fill a Hugging Face cache (HF_HOME) offline, so that the hub ids the notebooks use resolve through the libraries'
own cache code with HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1, as after a first download:

- `gpt2` and `lvwerra/distilbert-imdb`: `hub/models--ORG--NAME/snapshots/SHA/` with `refs/main` holding SHA, as
  `huggingface_hub` lays out a download. The configs and tokenizer files are the real ones (from the folders that
  DPO_IMDB_GPT2_DIR and DPO_IMDB_DISTILBERT_DIR name); the weights are RANDOM, seeded, of exactly the real shapes:
  the real loading code runs, the numbers mean nothing.
- `stanfordnlp/imdb`: the `datasets` cache of its default config `plain_text` (splits train, test, unsupervised;
  columns text and label), written by `datasets`' own parquet builder from the IMDb parquet files that
  DPO_IMDB_DATA_DIR names, where and as a first `load_dataset('stanfordnlp/imdb')` writes it.

    python tools/hf_cache.py HF_HOME          # the three variables must name the folders

The cache is built outside the repository (tools/colab_check.sh makes it in a temporary folder): never commit it.
"""
import hashlib, json, os, shutil, sys, time
from pathlib import Path

MODELS = {'gpt2': ('DPO_IMDB_GPT2_DIR', 'causal-lm', ('vocab.json', 'merges.txt', 'tokenizer_config.json')),
          'lvwerra/distilbert-imdb': ('DPO_IMDB_DISTILBERT_DIR', 'classifier', ('vocab.txt', 'tokenizer_config.json'))}
DATASET, DATA_VAR = 'stanfordnlp/imdb', 'DPO_IMDB_DATA_DIR'
SPLITS = {'train': 'train.parquet', 'test': 'test.parquet', 'unsupervised': 'unsup.parquet'}   # the hub's split names

def fake_sha(repo_id: str) -> str:
    "A fixed 40-hex-digit revision for `repo_id` (the real commit is unknown offline)."
    return hashlib.sha1(f'dpo_imdb offline cache of {repo_id}'.encode()).hexdigest()

def folder(var: str) -> Path:
    value = os.environ.get(var)
    if not value or not Path(value).is_dir(): sys.exit(f'tools/hf_cache.py: set {var} to a folder (got {value!r})')
    return Path(value)

def add_model(hub: Path, repo_id: str, var: str, kind: str, files: tuple) -> Path:
    "Write `repo_id` into the hub cache: the real config and tokenizer files, random weights of the real shape."
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification
    src, sha = folder(var), fake_sha(repo_id)
    repo = hub/f"models--{repo_id.replace('/', '--')}"
    snap = repo/'snapshots'/sha
    if snap.exists(): shutil.rmtree(snap)
    snap.mkdir(parents=True)
    (repo/'refs').mkdir(parents=True, exist_ok=True)
    (repo/'refs'/'main').write_text(sha)
    config = AutoConfig.from_pretrained(src)
    torch.manual_seed(0)
    auto = AutoModelForCausalLM if kind == 'causal-lm' else AutoModelForSequenceClassification
    auto.from_config(config).save_pretrained(snap)          # config.json (+ generation_config.json), model.safetensors
    for f in files: shutil.copy(src/f, snap/f)
    return snap

def add_imdb(datasets_cache: Path) -> Path:
    "Write the `datasets` cache of `stanfordnlp/imdb` (config plain_text) with `datasets`' own parquet builder."
    from datasets import ClassLabel, Features, Value
    from datasets.data_files import DataFilesDict
    from datasets.packaged_modules.parquet.parquet import Parquet, ParquetConfig
    src, sha = folder(DATA_VAR), fake_sha(DATASET)
    features = Features({'text': Value('string'), 'label': ClassLabel(names=['neg', 'pos'])})  # the hub's features
    files = DataFilesDict.from_patterns({split: [str(src/f)] for split, f in SPLITS.items()})
    class Imdb(Parquet):                                   # the builder a load of the hub's repo configures
        BUILDER_CONFIGS = [ParquetConfig(name='plain_text', data_files=files, features=features, columns=['text', 'label'])]
    Imdb.__module__ = Parquet.__module__                   # recorded as builder 'parquet', as for the hub's repo
    namespace, name = DATASET.split('/')
    target = datasets_cache/f'{namespace}___{name}'
    staging = datasets_cache/'.staging'
    shutil.rmtree(staging, ignore_errors=True); shutil.rmtree(target, ignore_errors=True)
    # the builder refuses local files under a repo id, so it writes `imdb/...` and the folder takes the repo's name
    Imdb(cache_dir=str(staging), dataset_name=name, config_name='plain_text', hash=sha).download_and_prepare()
    shutil.move(str(staging/name), str(target))
    shutil.rmtree(staging)
    return target

def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith('-'): sys.exit(__doc__)
    home = Path(sys.argv[1]).resolve()
    os.environ['HF_HOME'] = str(home)
    os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
    import datasets
    from transformers.utils import logging as hf_logging
    datasets.disable_progress_bars(); hf_logging.disable_progress_bar()
    t0 = time.time()
    for repo_id, (var, kind, files) in MODELS.items():
        add_model(home/'hub', repo_id, var, kind, files)
        print(f'   {repo_id}: real config and tokenizer, random weights ({time.time() - t0:.0f} s)')
    add_imdb(home/'datasets')
    print(f'   {DATASET}: the datasets cache of plain_text (train, test, unsupervised) ({time.time() - t0:.0f} s)')

if __name__ == '__main__': main()
