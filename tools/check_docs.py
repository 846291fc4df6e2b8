#!/usr/bin/env python
"""Check the docs build without Quarto: nbdev's pre-processing of every notebook, then what a reader would see.

1. Runs what `nbdev_proc_nbs` runs (the step `nbdev_docs` takes before calling Quarto) into `_proc/`, from scratch, and
   fails on any error. nbdev's pre-processing executes, in a fresh IPython shell per notebook (that has exports or
   `show_doc` cells), exactly these cells, in order:
   - every cell with an `export`, `exports`, `exporti` or `exec_doc` directive;
   - every other cell whose code contains an `import` or `from ... import` *anywhere* (inside an `if`, a `try`, a
     function body...), whatever its other directives (`#| hide` and `#| slow` cells too);
   - every cell with a top-level `show_doc(...)` call, including the `show_doc` cells nbdev adds after each exported
     function or class that no explicit `show_doc` names;
   but never a cell marked `#| eval: false` (which nbdev_test skips too) nor one containing the text `nbdev_export()`.
   So a long cell stays out of the docs build by holding no import (imports belong in the notebook's top import
   cells); its saved outputs are what the docs show.
   Two side effects are neutralised here: without Quarto, `nbdev_proc_nbs` would try to install it (sudo) and then
   `pip install -e .[dev]` into the current environment; and its sidebar step rewrites `nbs/sidebar.yml`, which is put
   back as it was.
2. Renders each processed notebook to Markdown (nbconvert, honouring Quarto's `echo`/`output`/`include: false`) into
   `_proc/_check/` and fails, naming the file, line and cell, on: a traceback or error output; an absolute path of a
   build machine (/work/, /root/, /home/, /tmp/, /usr/, /opt/, site-packages, a virtualenv); `../shared`; text about
   how the project is worked on; an image reference whose file does not exist relative to the page.
3. The same text checks on the source notebooks (every cell, hidden ones included, with their saved outputs) and on
   README.md and BENCHMARKS.md, whose images must exist in the repository (a raw.githubusercontent.com link to this
   repository's branch is checked against the file it points to). Saved outputs must also be what a reader should
   see: no warning, no "skipped", no replacement character (U+FFFD, the sign of text decoded wrongly), and every
   `$ dpo-imdb ... --help` transcript (as `10_cli`'s `shell` prints it) still what the command prints today: each
   line shown, in order.

`python tools/check_docs.py [--workers N]`; exit status 1 lists every problem.
"""
import argparse, json, os, re, shutil, sys, time, traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------------- what is refused
ABS_PATH = re.compile(r'(?<![\w.~/-])/(?:work|root|home|tmp|usr|opt)/|site-packages|dist-packages'
                      r'|[\w.-]*venv[\w.-]*/lib/python\d|/private/var/folders/|/var/folders/')   # venv: its lib/pythonX
SHARED = re.compile(r'\.\./shared\b')
WORKSPACE_PHRASES = ('was lent', 'lent to', 'lent a ', 'no gpu was', 'ci machine', 'this machine', 'build machine',
                     'lead engineer', 'other engineers', 'workplace', ' lease')
PHRASES = re.compile('|'.join(re.escape(p) for p in WORKSPACE_PHRASES), re.I)
TRACEBACK = re.compile(r'Traceback \(most recent call last\)|^-{20,}\s*$\n^\w*(?:Error|Exception)\b', re.M)
IMG_MD = re.compile(r'!\[[^\]]*\]\(\s*<?([^)\s>]+)')
IMG_HTML = re.compile(r'<img\b[^>]*?\bsrc\s*=\s*["\']([^"\']+)', re.I)

def text_problems(line: str) -> list[str]:
    "What `line` must not say, if anything."
    out = [f'absolute build-machine path {m.group(0)!r}' for m in ABS_PATH.finditer(line)]
    out += [f'{m.group(0)!r} (the workspace outside the repository)' for m in SHARED.finditer(line)]
    out += [f'workspace text {m.group(0)!r}' for m in PHRASES.finditer(line)]
    return out

def image_refs(line: str) -> list[str]: return IMG_MD.findall(line) + IMG_HTML.findall(line)

def _settings() -> dict:
    from configparser import ConfigParser
    cp = ConfigParser(delimiters=['=']); cp.read(ROOT/'settings.ini', encoding='utf-8')
    return dict(cp['DEFAULT'])

def _raw_prefix() -> str:
    "raw.githubusercontent.com address of this repository's branch (README images on PyPI point there)."
    s = _settings()
    return s['git_url'].replace('https://github.com/', 'https://raw.githubusercontent.com/').rstrip('/') + f"/{s['branch']}/"

def missing_image(ref: str, page_dir: Path, present=()) -> str | None:
    "Why image `ref` on a page in `page_dir` does not resolve, or None if it does (or cannot be checked offline)."
    ref = ref.split('#')[0].split('?')[0]
    if ref in present or ref.startswith(('data:', 'attachment:')): return None
    raw = _raw_prefix()
    if ref.startswith(raw):                      # this repository's own file, on its branch
        path = ROOT/ref[len(raw):]
        return None if path.is_file() else f'image {ref!r}: {path.relative_to(ROOT)} is not in the repository'
    if re.match(r'^[a-z]+://|^//', ref, re.I): return None
    path = (page_dir/ref)
    return None if path.is_file() else f'image {ref!r} does not exist (looked for {os.path.relpath(path, ROOT)})'

# ---------------------------------------------------------------------------------------------------- 1. nbdev proc
def _proc_one(item):
    "Process one file as nbdev's worker does: (name, seconds, error text or None, cells mixing imports and code)."
    import nbdev.processors, nbdev.serve_drv
    mixed = []
    def _collect(msg, *args, **kwargs):          # nbdev warns about each executed cell that imports and does more
        if str(msg).startswith('Found cells containing imports'): mixed.append(str(msg).split('---\n')[1].strip())
        else: import warnings; warnings.warn(msg, *args, **kwargs)
    nbdev.processors.warn = _collect
    t = time.time()
    try: nbdev.serve_drv.main(item); err = None
    except BaseException as e:                   # noqa: BLE001 -- reported, never swallowed
        err = ''.join(traceback.format_exception_only(type(e), e)).strip()
        cause = e.__cause__ or e.__context__
        if cause is not None: err += '\n  caused by ' + ''.join(traceback.format_exception_only(type(cause), cause)).strip()
    return str(item[0].relative_to(ROOT)), time.time() - t, err, mixed

def run_proc(workers: int) -> tuple[list[str], dict, dict]:
    "nbdev_proc_nbs into a fresh `_proc/`: (errors, seconds per notebook, executed cells that mix imports and code)."
    import nbdev.quarto, nbdev.serve
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp
    sys.path.insert(0, str(Path(__file__).parent))
    from check_docs import _proc_one as worker   # by module name: spawned workers must be able to import it
    results = []
    def _parallel(f, items, n_workers=0, pause=0, **kwargs):
        items = list(items)
        with ProcessPoolExecutor(max_workers=max(1, min(workers, len(items) or 1)), mp_context=mp.get_context('spawn')) as ex:
            results.extend(ex.map(worker, items))
    sidebar = ROOT/'nbs'/'sidebar.yml'
    saved = sidebar.read_bytes() if sidebar.exists() else None
    shutil.rmtree(ROOT/'_proc', ignore_errors=True)
    nbdev.quarto._ensure_quarto = lambda: None   # would sudo-install Quarto, then `pip install -e .[dev]` here
    nbdev.serve.parallel = _parallel             # every notebook's error, not just the first one's
    try: nbdev.quarto.nbdev_proc_nbs.__wrapped__(n_workers=workers)
    finally:
        if saved is not None: sidebar.write_bytes(saved)
    errors = [f'{name}: nbdev pre-processing failed: {err}' for name, _, err, _ in results if err]
    mixed = {name: cells for name, _, _, cells in results if cells}
    return errors, {name: secs for name, secs, _, _ in results if name.endswith('.ipynb')}, mixed

# ---------------------------------------------------------------------------------------------------- 2. rendering
def _quarto_opts(src: str) -> dict:
    opts = {}
    for line in src.splitlines():
        m = re.match(r'^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$', line)
        if not m: break
        opts[m.group(1)] = m.group(2).lower()
    return opts

def render(nb_path: Path) -> tuple[str, dict, dict]:
    "Markdown of a processed notebook as the page shows it, with `<!-- cell ID -->` markers; (text, resources, cells)."
    import nbformat
    from nbconvert import MarkdownExporter
    nb = nbformat.read(nb_path, as_version=4)
    cells, by_id = [], {}
    for i, c in enumerate(nb.cells):
        cid = c.get('id') or f'#{i}'
        by_id[cid] = c
        if c.cell_type == 'code':
            opts = _quarto_opts(c.source)
            if opts.get('include') == 'false': continue
            c.source = '' if opts.get('echo') == 'false' else re.sub(r'^(#\|.*\n?)+', '', c.source)
            if opts.get('output') == 'false': c.outputs = []
        cells += [nbformat.v4.new_markdown_cell(f'<!-- cell {cid} -->'), c]
    nb.cells = cells
    body, resources = MarkdownExporter().from_notebook_node(nb, resources={'unique_key': nb_path.stem})
    return body, resources, by_id

def check_rendered(nb_path: Path, out_dir: Path) -> list[str]:
    body, resources, cells = render(nb_path)
    md = out_dir/nb_path.relative_to(ROOT/'_proc').with_suffix('.md')
    md.parent.mkdir(parents=True, exist_ok=True); md.write_text(body, encoding='utf-8')
    where = f'{md.relative_to(ROOT)}'
    present = set(resources.get('outputs', {}))
    problems, cell, fenced = [], '?', False
    for n, line in enumerate(body.splitlines(), 1):
        m = re.match(r'^<!-- cell (\S+) -->$', line.strip())
        if m: cell = m.group(1); continue
        at = f'{where}:{n} (cell {cell})'
        problems += [f'{at}: {p}: {line.strip()[:160]}' for p in text_problems(line)]
        if line.lstrip().startswith('```'): fenced = not fenced
        if fenced or line.startswith(('    ', '\t')): continue     # code and printed text: shown as is, not as images
        for ref in image_refs(line):
            why = missing_image(ref, nb_path.parent, present)
            if why: problems.append(f'{at}: {why}')
    for m in TRACEBACK.finditer(body):
        n = body.count('\n', 0, m.start()) + 1
        problems.append(f'{where}:{n}: a traceback in the page')
    for cid, c in cells.items():
        for o in c.get('outputs', []):
            if o.get('output_type') == 'error': problems.append(f'{where} (cell {cid}): error output {o.get("ename")}: {o.get("evalue")}')
    return problems

# ---------------------------------------------------------------------------------------------------- 3. sources, README
def check_source_nb(nb_path: Path) -> list[str]:
    "Every cell of a source notebook (hidden ones too) and its saved text outputs."
    nb = json.loads(nb_path.read_text(encoding='utf-8'))
    problems, rel = [], nb_path.relative_to(ROOT)
    def _t(x): return ''.join(x) if isinstance(x, list) else (x or '')
    for c in nb['cells']:
        texts = [('source', _t(c['source']))]
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream': texts.append(('output', _t(o.get('text'))))
            elif o.get('output_type') == 'error': problems.append(f"{rel} (cell {c.get('id')}): saved error output {o.get('ename')}: {o.get('evalue')}")
            for mime in ('text/plain', 'text/html', 'text/markdown'):
                if mime in o.get('data', {}): texts.append(('output', _t(o['data'][mime])))
        for kind, text in texts:
            for n, line in enumerate(text.splitlines(), 1):
                problems += [f"{rel} (cell {c.get('id')}, {kind} line {n}): {p}: {line.strip()[:160]}" for p in text_problems(line)]
            if kind == 'output': problems += output_problems(f"{rel} (cell {c.get('id')})", text)
    return problems

WARNING = re.compile(r'\b\w*Warning\b|\bwarnings\.warn\(|^\s*warn\(', re.M)
SKIPPED = re.compile(r'\bskipped\b', re.I)

def help_transcript_problems(text: str) -> list[str]:
    "Each `$ dpo-imdb ... --help` transcript in `text` whose lines the command no longer prints, in that order."
    import subprocess
    problems = []
    for block in re.split(r'^(?=\$ dpo-imdb )', text, flags=re.M):
        head, _, body = block.partition('\n')
        if not head.startswith('$ dpo-imdb ') or '--help' not in head.split(): continue
        shown = [l for l in body.split('[exit status')[0].splitlines() if l.strip() and l != '[...]']
        fresh = subprocess.run([sys.executable, '-m', 'dpo_imdb', *head.split()[2:]], capture_output=True, text=True,
                               timeout=120, env={**os.environ, 'COLUMNS': '80'}, cwd=ROOT)
        lines, i = (fresh.stdout + fresh.stderr).splitlines(), 0
        for line in shown:
            i = next((j + 1 for j in range(i, len(lines)) if lines[j].rstrip() == line.rstrip()), None)
            if i is None: problems.append(f'{head[2:]}: the saved transcript shows {line.strip()!r}, which it no longer prints (there)'); break
    return problems

def output_problems(where: str, text: str) -> list[str]:
    "What a saved output must not show a reader."
    problems = [f'{where}: a warning in a saved output: {m.group(0)}' for m in WARNING.finditer(text)][:1]
    problems += [f'{where}: "skipped" in a saved output' for _ in SKIPPED.finditer(text)][:1]
    if 'Running in WANDB offline mode' in text:    # transformers prints it at import where WANDB_MODE=offline is set
        problems.append(f'{where}: W&B\'s offline-mode notice in a saved output: run it without WANDB_MODE, or clear it')
    if '\ufffd' in text: problems.append(f'{where}: a replacement character (U+FFFD) in a saved output: text decoded wrongly')
    return problems + [f'{where}: {p}' for p in help_transcript_problems(text)]

def check_pages(names=('README.md', 'BENCHMARKS.md')) -> list[str]:
    "The text and image checks on the top-level pages a reader opens on GitHub and PyPI."
    problems = []
    for name in names:
        path = ROOT/name
        if not path.exists(): problems.append(f'{name} is missing'); continue
        for n, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
            problems += [f'{name}:{n}: {p}: {line.strip()[:160]}' for p in text_problems(line)]
            problems += [f'{name}:{n}: {why}' for ref in image_refs(line) if (why := missing_image(ref, ROOT))]
    return problems

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1), help='notebooks processed at once')
    ap.add_argument('--verbose', action='store_true', help='list the executed cells that import and do more')
    ap.add_argument('--max-seconds', type=float, default=60, help='longest pre-processing allowed for one notebook')
    args = ap.parse_args()
    os.chdir(ROOT)                               # nbdev_docs runs from the repository root; so do the executed cells
    start = time.time()
    errors, secs, mixed = run_proc(args.workers)
    for name, s in sorted(secs.items(), key=lambda kv: -kv[1]): print(f'  proc {name:34s} {s:6.1f} s')
    print(f'== nbdev pre-processing: {len(secs)} notebooks in {time.time() - start:.0f} s, {len(errors)} failed')
    for name, cells in sorted(mixed.items()) if args.verbose else ():
        for c in cells: print(f'  note: {name}: the docs build runs this cell (it imports and does more): {c.splitlines()[0][:100]}')
    problems = list(errors)
    problems += [f'{name}: takes {s:.0f} s in the docs build (limit {args.max_seconds:.0f} s): move long work into cells '
                 'that hold no import (see the top of tools/check_docs.py)' for name, s in secs.items() if s > args.max_seconds]
    out_dir = ROOT/'_proc'/'_check'              # Quarto ignores folders starting with "_"
    shutil.rmtree(out_dir, ignore_errors=True)
    for nb in sorted((ROOT/'_proc').rglob('*.ipynb')):
        if '_check' not in nb.parts: problems += check_rendered(nb, out_dir)
    for nb in sorted((ROOT/'nbs').rglob('*.ipynb')):
        if not any(p.startswith(('.', '_')) for p in nb.relative_to(ROOT/'nbs').parts): problems += check_source_nb(nb)
    problems += check_pages()
    for p in problems: print(p)
    print(f'== docs check: {len(problems)} problem(s), {time.time() - start:.0f} s (rendered pages in {out_dir.relative_to(ROOT)}/)')
    sys.exit(1 if problems else 0)

if __name__ == '__main__': main()
