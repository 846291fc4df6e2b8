#!/usr/bin/env python
"""Open every notebook in nbs/ (index.ipynb too, hence README.md) with an "Open in Colab" badge and an install cell.

1. The badge and the runtime the notebook wants (GPU or CPU) go in their own markdown cell (id `colab-badge`) right
   after the notebook's title cell (`# Title` and `> summary`): nbdev turns the title cell into the page's front
   matter and drops the rest of that cell from the docs page, so a badge inside it would show in Colab and on GitHub
   but not on the docs site. The address comes from settings.ini (`git_url`, `branch`):
   https://colab.research.google.com/github/<user>/<repo>/blob/<branch>/nbs/<name>.ipynb
2. The install cell (id `colab-install`, hidden from the docs) comes next, the first code cell: in Colab it pip-installs
   the package (from PyPI, else from the repository on GitHub); anywhere else -- nbdev_test, a clone, the Colab check --
   it does nothing. It is plain Python (no `!pip` magic), so nbdev and execnb run it as they run any cell.

A notebook wants a GPU when it has a `#| gpu` cell or is in RUNS_ON_GPU; the others run on a CPU (and use a GPU when
there is one).

`python tools/colab_badges.py` writes the cells; `--check` only reports notebooks whose cells are missing or out of
date (exit status 1). Run `python tools/readme.py` afterwards: README.md is generated from nbs/index.ipynb.
"""
import json, sys
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELL_ID, INSTALL_ID = 'colab-badge', 'colab-install'
BADGE_IMG = 'https://colab.research.google.com/assets/colab-badge.svg'
RUNS_ON_GPU = ('08b_colab_run',)        # runs the `colab` preset: the notebooks with `#| gpu` cells are added to these

def _settings() -> tuple[str, str, str]:
    "The package name, the GitHub repository (user/repo) and the branch, from settings.ini."
    cp = ConfigParser(delimiters=['=']); cp.read(ROOT/'settings.ini', encoding='utf-8')
    cfg = cp['DEFAULT']
    prefix = 'https://github.com/'
    if not cfg['git_url'].startswith(prefix): raise SystemExit(f"settings.ini git_url must start with {prefix}: {cfg['git_url']}")
    return cfg['lib_name'], cfg['git_url'][len(prefix):].strip('/').removesuffix('.git'), cfg['branch']

def colab_url(nb_rel: str) -> str:
    "Colab address of the notebook at `nb_rel` (relative to the repository root) on the configured branch."
    _, repo, branch = _settings()
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/{nb_rel}"

def wants_gpu(nb: dict, name: str) -> bool:
    "Whether the notebook wants a GPU runtime: it has a `#| gpu` cell, or it is one of RUNS_ON_GPU."
    return name in RUNS_ON_GPU or any(c['cell_type'] == 'code' and '#| gpu' in _text(c['source']).splitlines()
                                      for c in nb['cells'])

def badge_source(nb_rel: str, gpu: bool = False) -> str:
    runtime = ("Runtime: **GPU** (in Colab: Runtime > Change runtime type > GPU); on a CPU its GPU cells say so in one "
               "line and pass." if gpu else "Runtime: a **CPU** is enough (a GPU is used when there is one).")
    return (f"[![Open In Colab]({BADGE_IMG})]({colab_url(nb_rel)})\n\n"
            f"{runtime} In Colab the first code cell installs the package; elsewhere it does nothing.")

def install_source(gpu: bool = False) -> str:
    lib, repo, branch = _settings()
    return (f"#| hide\n"
            f"# Colab ({'GPU' if gpu else 'CPU'} runtime): install the package and what it needs. Anywhere else this does nothing.\n"
            f"import subprocess, sys\n"
            f"if 'google.colab' in sys.modules:\n"
            f"    pip = [sys.executable, '-m', 'pip', 'install', '-q']\n"
            f"    if subprocess.run(pip + ['{lib}']).returncode:               # not on PyPI yet: from GitHub\n"
            f"        subprocess.run(pip + ['git+https://github.com/{repo}.git@{branch}'], check=True)")

def _text(src) -> str: return ''.join(src) if isinstance(src, list) else src

def _is_title(cell) -> bool: return cell['cell_type'] == 'markdown' and _text(cell['source']).lstrip().startswith('# ')

def _cell(kind: str, cell_id: str, source: str, as_list: bool) -> dict:
    "A cell as nbdev_clean leaves it."
    cell = {'cell_type': kind, 'id': cell_id, 'metadata': {}, 'source': source.splitlines(keepends=True) if as_list else source}
    if kind == 'code': cell = {'cell_type': kind, 'execution_count': None, 'id': cell_id, 'metadata': {}, 'outputs': [],
                               'source': cell['source']}
    return cell

def update(nb_path: Path, write: bool) -> str | None:
    "Insert or refresh the badge and install cells of `nb_path`; a description of what was (or would be) changed, or None."
    raw = nb_path.read_text(encoding='utf-8')
    nb = json.loads(raw)
    cells = nb['cells']
    gpu = wants_gpu(nb, nb_path.stem)
    want = {CELL_ID: ('markdown', badge_source(nb_path.relative_to(ROOT).as_posix(), gpu)),
            INSTALL_ID: ('code', install_source(gpu))}
    title = next((i for i, c in enumerate(cells) if c['cell_type'] == 'markdown'), None)
    if title is None or not _is_title(cells[title]): return f'{nb_path.relative_to(ROOT)}: no "# Title" markdown cell first'
    ids = list(want)
    placed = all(cells[title + 1 + k].get('id') == cid and _text(cells[title + 1 + k]['source']) == want[cid][1]
                 and cells[title + 1 + k]['cell_type'] == want[cid][0] and not cells[title + 1 + k].get('outputs')
                 for k, cid in enumerate(ids) if title + 1 + k < len(cells))
    if placed and sum(c.get('id') in want for c in cells) == len(want) and title + len(want) < len(cells): return None
    had = {c.get('id') for c in cells} & set(want)
    cells[:] = [c for c in cells if c.get('id') not in want]
    as_list = isinstance(cells[title]['source'], list)
    for k, cid in enumerate(ids): cells.insert(title + 1 + k, _cell(*want[cid][:1], cid, want[cid][1], as_list))
    if write: nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    return f"{nb_path.relative_to(ROOT)}: " + ', '.join(f"{cid} {'updated' if cid in had else 'added'}" for cid in ids)

def main():
    check = '--check' in sys.argv
    nbs = [p for p in sorted((ROOT/'nbs').rglob('*.ipynb'))
           if not any(part.startswith(('.', '_')) for part in p.relative_to(ROOT/'nbs').parts)]
    changes = [c for c in (update(p, write=not check) for p in nbs) if c]
    for c in changes: print(c + (' (needed: run python tools/colab_badges.py)' if check else ''))
    if check:
        print(f'Colab badge and install cells: {len(nbs) - len(changes)} of {len(nbs)} notebooks up to date')
        sys.exit(1 if changes else 0)

if __name__ == '__main__': main()
