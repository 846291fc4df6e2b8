import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Real data and assets live outside the repository; tests find them only through these variables (.ci/run sets them)
REAL_DATA = {
    'DPO_IMDB_DATA_DIR': 'the folder of the IMDb parquet files (train/test/unsup.parquet)',
    'DPO_IMDB_GPT2_DIR': 'a folder with the real GPT-2 tokenizer files and gpt2 config.json',
    'DPO_IMDB_DISTILBERT_DIR': 'a folder with a DistilBERT SST-2 config.json and its vocab.txt',
}

def skip_without(var: str, why: str):
    "Skip, printing why, a test that needs environment variable `var`; fail instead where real data is required."
    reason = f'{var} is not set: {why}'
    if os.environ.get('DPO_IMDB_REQUIRE_REAL_DATA'): pytest.fail(f'{reason} (DPO_IMDB_REQUIRE_REAL_DATA is set)', pytrace=False)
    print(f'SKIP: {reason}')
    pytest.skip(reason)

def cli(*args) -> list[str]:
    "The `dpo-imdb` command line, run with this interpreter."
    return [sys.executable, '-c', 'import sys; from dpo_imdb.cli import main; sys.exit(main())', *args]

def finished_chunks(chunks_dir: Path) -> dict[str, int]:
    """The chunks a stage finished, by folder name, with their `dataset_info.json`'s mtime (ns). `save_to_disk` writes
    that file last into `<span>.partial`, which `atomic_dir` then renames: a `.partial` holding it is not finished."""
    return {p.parent.name: p.stat().st_mtime_ns for p in Path(chunks_dir).glob('*/dataset_info.json')
            if not p.parent.name.endswith('.partial')}

def real_data(var: str, *files: str) -> Path:
    """The folder that environment variable `var` names, holding readable `files`.

    Not set: the test is skipped, and the reason printed -- or it fails where `DPO_IMDB_REQUIRE_REAL_DATA` is set (CI
    with the real data: a tier lost to a renamed variable would otherwise pass unseen). Set but missing or unreadable:
    the test fails -- a configured real-data check never quietly does nothing."""
    value = os.environ.get(var)
    if not value: skip_without(var, f'set it to {REAL_DATA[var]} to run this real-data test')
    folder = Path(value)
    for path in [folder, *(folder/f for f in files)]:
        try:
            if path.is_dir(): os.listdir(path)
            else:
                with open(path, 'rb') as f: f.read(1)
        except OSError as e:
            pytest.fail(f'{var}={value}, but {path} cannot be read ({e.strerror or e}): fix the path or unset {var}',
                        pytrace=False)
    return folder

def gpt2_alive_at(monkeypatch, module, name: str, run) -> tuple[int, list[int]]:
    """The GPT-2 models alive, collected or not, before `run()` and at each call of `module.name` during it, with
    Python's collector off: only the collections the code asks for happen."""
    import gc
    from transformers import GPT2LMHeadModel
    alive = lambda: sum(type(o) is GPT2LMHeadModel for o in gc.get_objects())   # not isinstance: a torch proxy warns
    seen, wrapped = [], getattr(module, name)
    def counting(*args, **kwargs):
        seen.append(alive())
        return wrapped(*args, **kwargs)
    monkeypatch.setattr(module, name, counting)
    gc.collect(); before = alive()
    gc.disable()
    try: run()
    finally: gc.enable()
    return before, seen
