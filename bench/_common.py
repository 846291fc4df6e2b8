"""Shared helpers of the benchmark scripts: real-shaped models, real IMDb text, machine facts, timing and tables.

Benchmarks are scripts, not tests. Each one runs ours and the peer in one invocation, on the same inputs,
interleaved (ours, peer, ours, peer, ...) so that machine load hits both alike, and reports medians.
"""
import argparse, json, os, platform, resource, statistics, subprocess, sys, time
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')            # no hub here: models are built from configs
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
os.environ.setdefault('WANDB_MODE', 'disabled')

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
# real data and assets live outside the repository, found only through these variables (as the tests find them)
REAL = {'DPO_IMDB_GPT2_DIR': 'the GPT-2 tokenizer and gpt2 config.json',
        'DPO_IMDB_DISTILBERT_DIR': 'a DistilBERT SST-2 config.json and vocab.txt',
        'DPO_IMDB_DATA_DIR': 'the IMDb parquet files: train/test/unsup.parquet'}
GPT2_SHAPE, DISTILBERT_SHAPE, IMDB = (Path(os.environ.get(var, '')) for var in REAL)
RESULTS = BENCH / 'results'


def need_shared():
    "Fail with a clear message when a variable naming the real tokenizer, configs or IMDb is unset or wrong."
    bad = [f"{var} ({what})" for (var, what), path in zip(REAL.items(), (GPT2_SHAPE, DISTILBERT_SHAPE, IMDB))
           if not os.environ.get(var) or not path.is_dir()]
    if bad: sys.exit(f"benchmarks need real shapes and data: set {'; '.join(bad)}")


def parser(description: str) -> argparse.ArgumentParser:
    "Argument parser with the flags every benchmark takes."
    p = argparse.ArgumentParser(description=description)
    p.add_argument('--quick', action='store_true', help='tiny sizes: checks the script end to end in a minute or two')
    p.add_argument('--repeats', type=int, default=3, help='interleaved repeats of each side (median reported)')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0 = torch default)')
    p.add_argument('--out', default=None, help='JSON result path (default bench/results/<name>.json)')
    return p


def set_threads(n: int):
    import torch
    if n: torch.set_num_threads(n)


# -- machine facts ---------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
        return next(l.split(':', 1)[1].strip() for l in out.splitlines() if l.startswith('Model name'))
    except Exception: return platform.processor() or 'unknown'


def ram_gib() -> float:
    try:
        kb = next(int(l.split()[1]) for l in Path('/proc/meminfo').read_text().splitlines() if l.startswith('MemTotal'))
        return round(kb / 2**20, 1)
    except Exception: return float('nan')


def versions() -> dict:
    import torch, transformers, trl, datasets
    return {'python': platform.python_version(), 'torch': torch.__version__, 'transformers': transformers.__version__,
            'trl': trl.__version__, 'datasets': datasets.__version__}


def machine() -> dict:
    "Hardware, library versions, torch threads and the load average right now."
    import torch
    return {'cpu': cpu_model(), 'cores': os.cpu_count(), 'ram_gib': ram_gib(), 'gpu': torch.cuda.is_available(),
            'torch_threads': torch.get_num_threads(), 'loadavg_start': os.getloadavg(), **versions()}


def load() -> float:
    "1-minute load average."
    return round(os.getloadavg()[0], 2)


# -- models and data ---------------------------------------------------------------------------------------------------
def gpt2_shape(seed: int = 0):
    "GPT-2 tokenizer (pad = EOS, left padding) and a randomly initialised `gpt2`-shaped causal LM (124M parameters)."
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from dpo_imdb.data import load_tokenizer
    tok = load_tokenizer(str(GPT2_SHAPE))
    cfg = AutoConfig.from_pretrained(str(GPT2_SHAPE))
    cfg.pad_token_id = tok.pad_token_id
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def distilbert_shape(seed: int = 0):
    "DistilBERT tokenizer and a randomly initialised SST-2-shaped classifier (66M parameters)."
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(DISTILBERT_SHAPE))
    cfg = AutoConfig.from_pretrained(str(DISTILBERT_SHAPE))
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(cfg).eval(), tok


def imdb_reviews(split: str = 'test'):
    "Cleaned real IMDb reviews of one split (`text`, `label`, `id`)."
    from dpo_imdb.data import clean_reviews, load_imdb
    return clean_reviews(load_imdb(str(IMDB / f'{split}.parquet'))[split])[0]


def imdb_prompts(tok, n: int, seed: int = 0):
    "`n` real IMDb prompts (2-8 tokens of a review's opening) made by the project's `make_prompts`."
    from dpo_imdb.data import make_prompts
    return make_prompts(imdb_reviews('train'), tok, n_train=n, n_eval=0, seed=seed, verbose=False)['train']


# -- timing and reporting -----------------------------------------------------------------------------------------------
def timed(fn, *args, **kwargs) -> tuple[float, object]:
    "Seconds taken by `fn(*args, **kwargs)`, and its result."
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def median(xs): return statistics.median(xs) if xs else float('nan')


def summarize(runs: list[dict], key: str) -> dict:
    "Median, min and max of `key` over `runs`, with each run's value."
    xs = [r[key] for r in runs]
    return {'median': median(xs), 'min': min(xs), 'max': max(xs), 'runs': xs}


def _status_mb(field: str) -> float:
    "A memory field of /proc/self/status (Linux), MiB."
    with open('/proc/self/status') as status:
        return next(int(l.split()[1]) for l in status if l.startswith(field + ':')) / 1024


def peak_rss_mb() -> float:
    """Peak resident memory of this process image, MiB: `VmHWM` of /proc/self/status.

    Not `ru_maxrss`: Linux carries the parent's peak over fork/vfork + exec into the child's `ru_maxrss`, so a
    worker started by a parent holding a model would report the parent's peak."""
    try: return _status_mb('VmHWM')
    except (OSError, StopIteration): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    "Resident memory of this process now, MiB (`VmRSS`): with `peak_rss_mb` after, what a step added at its peak."
    return _status_mb('VmRSS')


def table(headers: list[str], rows: list[list]) -> str:
    "A GitHub-markdown table (also readable in a terminal)."
    def fmt(v):
        if isinstance(v, float): return f'{v:,.3g}' if abs(v) < 100 else f'{v:,.0f}'
        return str(v)
    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda vs: '| ' + ' | '.join(v.ljust(w) for v, w in zip(vs, widths)) + ' |'
    return '\n'.join([line(headers), '|' + '|'.join('-' * (w + 2) for w in widths) + '|'] + [line(r) for r in cells])


def write_result(name: str, result: dict, out: str | None = None) -> Path:
    "Write `result` (with the load average at the end added) as JSON to `out` or bench/results/<name>.json."
    result = {**result, 'loadavg_end': os.getloadavg()}
    path = Path(out) if out else RESULTS / f'{name}.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=float) + '\n')
    print(f'wrote {path}')
    return path


def banner(name: str, info: dict, **sizes):
    print(f"== {name}: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM; torch threads "
          f"{info['torch_threads']}; load {info['loadavg_start'][0]:.2f}; " + ', '.join(f'{k}={v}' for k, v in sizes.items()),
          flush=True)
