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

def cli(*args) -> list[str]:
    "The `dpo-imdb` command line, run with this interpreter."
    return [sys.executable, '-c', 'import sys; from dpo_imdb.cli import main; sys.exit(main())', *args]

def real_data(var: str, *files: str) -> Path:
    """The folder that environment variable `var` names, holding readable `files`.

    Not set: the test is skipped, and the reason printed. Set but missing or unreadable: the test fails -- a configured
    real-data check never quietly does nothing."""
    value = os.environ.get(var)
    if not value:
        reason = f'{var} is not set: set it to {REAL_DATA[var]} to run this real-data test'
        print(f'SKIP: {reason}')
        pytest.skip(reason)
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
