import sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/'shared'

def cli(*args) -> list[str]:
    "The `dpo-imdb` command line, run with this interpreter."
    return [sys.executable, '-c', 'import sys; from dpo_imdb.cli import main; sys.exit(main())', *args]

def need_shared(*parts):
    "Skip (with the reason printed) when ../shared lacks the given path."
    path = SHARED.joinpath(*parts)
    if not path.exists():
        print(f'SKIP: {path} not found (the real-data tier needs ../shared)')
        pytest.skip(f'{path} not found: the real-data tier runs only where ../shared exists')
    return path
