#!/usr/bin/env python
"""Put an "Open in Colab" badge at the top of every notebook in nbs/ (index.ipynb too, hence README.md).

The badge and one line telling Colab users what to install go in their own markdown cell (id `colab-badge`) right
after the notebook's title cell (`# Title` and `> summary`): nbdev turns the title cell into the page's front matter
and drops the rest of that cell from the docs page, so a badge inside it would show in Colab and on GitHub but not on
the docs site. The address comes from settings.ini (`git_url`, `branch`):
https://colab.research.google.com/github/<user>/<repo>/blob/<branch>/nbs/<name>.ipynb

`python tools/colab_badges.py` writes the cells; `--check` only reports notebooks whose badge is missing or out of date
(exit status 1). Run `python tools/readme.py` afterwards: README.md is generated from nbs/index.ipynb.
"""
import json, sys
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELL_ID = 'colab-badge'
BADGE_IMG = 'https://colab.research.google.com/assets/colab-badge.svg'

def colab_url(nb_rel: str) -> str:
    "Colab address of the notebook at `nb_rel` (relative to the repository root) on the configured branch."
    cp = ConfigParser(delimiters=['=']); cp.read(ROOT/'settings.ini', encoding='utf-8')
    cfg = cp['DEFAULT']
    prefix = 'https://github.com/'
    if not cfg['git_url'].startswith(prefix): raise SystemExit(f"settings.ini git_url must start with {prefix}: {cfg['git_url']}")
    repo = cfg['git_url'][len(prefix):].strip('/').removesuffix('.git')
    return f"https://colab.research.google.com/github/{repo}/blob/{cfg['branch']}/{nb_rel}"

def badge_source(nb_rel: str) -> str:
    return (f"[![Open In Colab]({BADGE_IMG})]({colab_url(nb_rel)})\n\n"
            "In Colab, run `!pip install dpo_imdb` in a first cell: the package installs everything this notebook needs.")

def _text(src) -> str: return ''.join(src) if isinstance(src, list) else src

def _is_title(cell) -> bool: return cell['cell_type'] == 'markdown' and _text(cell['source']).lstrip().startswith('# ')

def update(nb_path: Path, write: bool) -> str | None:
    "Insert or refresh the badge cell of `nb_path`; a description of what was (or would be) changed, or None."
    raw = nb_path.read_text(encoding='utf-8')
    nb = json.loads(raw)
    cells = nb['cells']
    want = badge_source(nb_path.relative_to(ROOT).as_posix())
    title = next((i for i, c in enumerate(cells) if c['cell_type'] == 'markdown'), None)
    if title is None or not _is_title(cells[title]): return f'{nb_path.relative_to(ROOT)}: no "# Title" markdown cell first'
    have = [i for i, c in enumerate(cells) if c.get('id') == CELL_ID]
    if have == [title + 1] and _text(cells[title + 1]['source']) == want: return None
    for i in reversed(have): del cells[i]
    as_list = isinstance(cells[title]['source'], list)
    cells.insert(title + 1, {'cell_type': 'markdown', 'id': CELL_ID, 'metadata': {},
                             'source': want.splitlines(keepends=True) if as_list else want})
    if write: nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    return f"{nb_path.relative_to(ROOT)}: {'badge updated' if have else 'badge added'}"

def main():
    check = '--check' in sys.argv
    nbs = [p for p in sorted((ROOT/'nbs').rglob('*.ipynb'))
           if not any(part.startswith(('.', '_')) for part in p.relative_to(ROOT/'nbs').parts)]
    changes = [c for c in (update(p, write=not check) for p in nbs) if c]
    for c in changes: print(c + (' (needed: run python tools/colab_badges.py)' if check else ''))
    if check:
        print(f'Colab badges: {len(nbs) - len(changes)} of {len(nbs)} notebooks up to date')
        sys.exit(1 if changes else 0)

if __name__ == '__main__': main()
