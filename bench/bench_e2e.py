"""End to end: wall time and peak RSS of `dpo-imdb demo`, per stage, from the run manifests.

Runs `dpo-imdb demo --out <dir> --force` in a subprocess (a fresh run: `--force` clears an old one), times it, reads
its peak RSS with `os.wait4`, then reads `<dir>/<stage>/manifest.json` (`seconds`, `peak_rss_mb`) for every stage.
A manifest's `peak_rss_mb` is the process's peak *so far* (ru_maxrss when the stage finished), so the table also
shows how much each stage raised it. `--threads N` sets OMP_NUM_THREADS for the run (PyTorch's OpenMP threads slow
down badly when other processes share the two cores).
"""
import shutil, subprocess, sys, time
from _common import *

STAGES = ('setup', 'prompts', 'generate', 'score', 'triplets', 'train', 'evaluate')


def run_demo(out: Path, threads: int, extra: list[str]) -> dict:
    env = {**os.environ, **({'OMP_NUM_THREADS': str(threads)} if threads else {})}
    cli = Path(sys.executable).with_name('dpo-imdb')
    cmd = ([str(cli)] if cli.exists() else [sys.executable, '-m', 'dpo_imdb.cli']) + ['demo', '--out', str(out), '--force', *extra]
    log = open(out.parent / f'{out.name}.log', 'w')
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    log.close()
    if status: raise RuntimeError(f'dpo-imdb demo failed (status {status}); see {log.name}')
    stages = {}
    for s in STAGES:
        f = out / s / 'manifest.json'
        if f.exists():
            m = json.loads(f.read_text())
            stages[s] = {'seconds': m['seconds'], 'peak_rss_mb': m['peak_rss_mb'], 'counts': m.get('counts', {})}
    metrics = json.loads((out / 'evaluate' / 'metrics.json').read_text()) if (out / 'evaluate' / 'metrics.json').exists() else {}
    return {'wall_seconds': seconds, 'peak_rss_mb': usage.ru_maxrss / 1024, 'stages': stages, 'load': load(),
            'metrics': {k: metrics.get(k) for k in ('pos_prob_gain', 'win_rate', 'n_prompts')}}


def main():
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(repeats=1)
    p.add_argument('--data', default=None, help="review source passed to the demo (default: the demo's own)")
    p.add_argument('--keep', action='store_true', help='keep the run directories')
    args = p.parse_args()
    extra = ['--data', args.data] if args.data else []
    info = machine()
    info['torch_threads'] = args.threads or info['torch_threads']
    banner('end to end (dpo-imdb demo)', info, repeats=args.repeats, data=args.data or 'demo preset')
    if args.quick:
        print('  --quick: the demo is the unit here; nothing smaller to run. Skipping.')
        return write_result('e2e', {'machine': info, 'args': vars(args), 'skipped': True}, args.out)
    runs = []
    for r in range(args.repeats):
        out = RESULTS / f'demo-run-{r}'
        RESULTS.mkdir(parents=True, exist_ok=True)
        runs.append(run_demo(out, args.threads, extra))
        print(f"  repeat {r}: {runs[-1]['wall_seconds']:.0f} s, peak RSS {runs[-1]['peak_rss_mb']:.0f} MiB "
              f"(load {runs[-1]['load']}); metrics {runs[-1]['metrics']}", flush=True)
        if not args.keep: shutil.rmtree(out, ignore_errors=True)
    rows, prev = [], 0.0
    for s in STAGES:
        if s not in runs[0]['stages']: continue
        secs = median([r['stages'][s]['seconds'] for r in runs])
        rss = median([r['stages'][s]['peak_rss_mb'] for r in runs])
        rows.append([s, secs, rss, max(0.0, rss - prev)]); prev = max(prev, rss)
    rows.append(['whole run (wall, incl. start-up)', median([r['wall_seconds'] for r in runs]),
                 median([r['peak_rss_mb'] for r in runs]), ''])
    print(table(['stage', 'seconds', 'peak RSS so far (MiB)', 'raised by (MiB)'], rows))
    print(f'load now {load()}; OMP threads {args.threads or "default"}')
    write_result('e2e', {'machine': info, 'args': vars(args), 'runs': runs, 'table': rows}, args.out)


if __name__ == '__main__':
    main()
