#!/usr/bin/env python
"""The lock: the exact version of every package the tests and the published results run with, in `constraints.txt`.

    python tools/lock.py            # write constraints.txt from this environment
    python tools/lock.py --check    # exit 1, listing the differences, if this environment is not the locked one

Make it in a fresh virtualenv with what `.ci/run` installs, `pip install torch==2.13.0 && pip install -e ".[dev]"`,
then run the tests, regenerate the published results (`python tools/results.py`) and commit all three together.
`.ci/run`, `tools/colab_check.sh` and `tools/results.py` install with `pip install -c constraints.txt ...`, so a library
release can change neither CI's outcome nor the published numbers until the lock is remade. The package's own
requirements (settings.ini) stay ranges: a user's `pip install dpo_imdb` takes the newest releases they allow.
"""
import argparse, re, sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT/'constraints.txt'
NOT_LOCKED = {'dpo-imdb', 'pip', 'setuptools', 'wheel'}      # the project itself and the installers

def canonical(name: str) -> str:
    "A distribution name as pip compares them (PEP 503): `Scikit_Learn` -> `scikit-learn`."
    return re.sub(r'[-_.]+', '-', name).lower()

def installed() -> dict[str, str]:
    "Every distribution in this environment but the project and the installers, by canonical name -> version."
    found = {canonical(d.metadata['Name']): d.version for d in metadata.distributions() if d.metadata['Name']}
    # torch's local label (`2.13.0+cpu`) names the build, not the release: `==2.13.0` admits the same wheel
    return {name: version.split('+')[0] if name == 'torch' else version
            for name, version in sorted(found.items()) if name not in NOT_LOCKED}

def read(path: Path = LOCK) -> dict[str, str]:
    "The locked versions in `path`, by canonical name."
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if not line: continue
        name, sep, version = line.partition('==')
        if not sep: raise ValueError(f'{path.name}: {line!r} is not a `name==version` pin')
        pins[canonical(name)] = version.strip()
    return pins

def differences(locked: dict[str, str], current: dict[str, str]) -> list[str]:
    "What `current` does differently from `locked`: other versions, and locked packages that are missing."
    return [f'{name}: locked {version}, installed {current.get(name, "nothing")}'
            for name, version in locked.items() if current.get(name) != version]

def write(path: Path = LOCK) -> Path:
    header = ['# The exact versions the tests and the published results use: written by `python tools/lock.py`;',
              '# installed with `pip install -c constraints.txt ...` by .ci/run, tools/colab_check.sh and tools/results.py.',
              f'# Python {sys.version.split()[0]}.']
    path.write_text('\n'.join(header + [f'{n}=={v}' for n, v in installed().items()]) + '\n')
    return path

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--check', action='store_true', help='compare this environment with constraints.txt; write nothing')
    args = p.parse_args(argv)
    if not args.check:
        print(f'wrote {write().relative_to(ROOT)}: {len(installed())} packages')
        return 0
    diffs = differences(read(), installed())
    for d in diffs: print(d)
    print(f'{LOCK.name}: ' + (f'{len(diffs)} differences' if diffs else 'this environment is the locked one'))
    return 1 if diffs else 0

if __name__ == '__main__':
    sys.exit(main())
