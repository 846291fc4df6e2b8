"""Run every benchmark and print the summary table that BENCHMARKS.md records.

    python bench/run_all.py            # full sizes (over an hour on a busy 2-core CPU, see BENCHMARKS.md)
    python bench/run_all.py --quick    # tiny sizes: checks every script end to end (a few minutes)
    python bench/run_all.py --only generation,scoring

Each benchmark runs in its own process (`bench/bench_<name>.py`), writes bench/results/<name>.json, and prints its
own table; this script then writes bench/results/summary.md with the headline numbers and the targets.
`--threads` (default 1) is passed to every benchmark: with other jobs on the two cores, PyTorch's two OpenMP threads
run many times slower than one (see BENCHMARKS.md), and both sides of every comparison use the same setting.
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / 'results'
FULL = {
    'generation': ['--prompts', '64', '--samples', '4', '--max-new-tokens', '48', '--batch-sizes', '64,256',
                   '--peer-prompts', '8', '--repeats', '3'],
    'scoring': ['--reviews', '2000', '--per-repeat', '64', '--repeats', '3'],
    'training': ['--steps', '20', '--warmup', '1', '--batch', '8', '--max-length', '128', '--repeats', '1',
                 '--sides', 'ours,trl'],
    'scale': ['--sizes', '64,256,1024', '--repeats', '3'],
    'e2e': ['--repeats', '1'],
}


def fmt(x, nd=2): return f'{x:.{nd}f}' if isinstance(x, (int, float)) else str(x)


def summary_md(names: list[str], seconds: dict) -> str:
    "Headline numbers of every result file present, as markdown."
    out = []
    def load(name):
        f = RESULTS / f'{name}.json'
        return json.loads(f.read_text()) if f.exists() and name in names else None
    if g := load('generation'):
        m = g['machine']
        out += [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, GPU: {m['gpu']}; torch {m['torch']}, "
                f"transformers {m['transformers']}, trl {m['trl']}; torch threads {m['torch_threads']}.", '']
    out += ['| benchmark | side | median | unit | vs peer | target | met | load (start-end) |', '|---|---|---|---|---|---|---|---|']
    if g:
        base = g['summary']['pipeline per prompt']['median']
        for side, s in g['summary'].items():
            tgt = '>= 4x pipeline' if side == g['best_ours'] else ''
            met = ('yes' if g['met'] else 'no') if side == g['best_ours'] else ''
            out.append(f"| generation | {side} | {fmt(s['median'])} | completions/s | {fmt(s['median'] / base)}x pipeline "
                       f"| {tgt} | {met} | {fmt(g['machine']['loadavg_start'][0])}-{fmt(g['loadavg_end'][0])} |")
    if s := load('scoring'):
        base = s['summary']['pipeline default (bs=1)']['median']
        for side, v in s['summary'].items():
            verdict = s.get(side)
            tgt = '>= 3x default, >= 1x bs=32' if verdict else ''
            met = ('yes' if verdict['met'] else f"no ({fmt(verdict['vs_default'])}x, {fmt(verdict['vs_batched'])}x)") if verdict else ''
            out.append(f"| scoring | {side} | {fmt(v['median'])} | reviews/s | {fmt(v['median'] / base)}x default | {tgt} "
                       f"| {met} | {fmt(s['machine']['loadavg_start'][0])}-{fmt(s['loadavg_end'][0])} |")
    if t := load('training'):
        first = next(iter(t['summary']))
        for side, v in t['summary'].items():
            c = t['checks'].get(side)
            vs = (f"ours {fmt(c['speedup'])}x speed, {fmt(c['rss_ratio'])}x RSS; step-1 loss diff "
                  f"{c['loss_step1_abs_diff']:.1e}") if c else ''
            tgt = '>= 1.3x speed at <= 0.7x RSS, same loss' if c else ''
            met = ('yes' if c['met'] else 'no') if c else ''
            out.append(f"| training | {side} | {fmt(v['pairs_per_s']['median'], 3)} pairs/s, {fmt(v['peak_rss_mb']['median'], 0)} MiB "
                       f"| pairs/s, peak RSS | {vs} | {tgt} | {met} | {fmt(t['machine']['loadavg_start'][0])}-{fmt(t['loadavg_end'][0])} |")
    if e := load('e2e'):
        if not e.get('skipped'):
            for row in e['table']:
                out.append(f"| e2e demo | {row[0]} | {fmt(row[1], 1)} s, {fmt(row[2], 0)} MiB | seconds, peak RSS so far | | | "
                           f"| {fmt(e['machine']['loadavg_start'][0])}-{fmt(e['loadavg_end'][0])} |")
    if c := load('scale'):
        for row in c['table']:
            out.append(f"| scale (tiny-gpt2) | {row[0]} prompts, {row[1]} pairs | generate {fmt(row[2], 1)} s, train {fmt(row[5], 1)} s "
                       f"| seconds | per prompt vs smallest: gen {fmt(row[3])}, train {fmt(row[6])} | linear | | "
                       f"{fmt(c['machine']['loadavg_start'][0])}-{fmt(c['loadavg_end'][0])} |")
    out += ['', 'Wall time of each benchmark: ' + ', '.join(f'{k} {v / 60:.1f} min' for k, v in seconds.items())]
    return '\n'.join(out) + '\n'


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--only', default=','.join(FULL), help='comma-separated subset of ' + ', '.join(FULL))
    args = p.parse_args()
    names = [n for n in args.only.split(',') if n]
    seconds, failed = {}, []
    t_all = time.time()
    for name in names:
        cmd = [sys.executable, str(BENCH / f'bench_{name}.py'), '--threads', str(args.threads)]
        cmd += ['--quick'] if args.quick else FULL[name]
        print(f"\n### {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        rc = subprocess.run(cmd, cwd=BENCH.parent).returncode
        seconds[name] = time.time() - t0
        if rc: failed.append(name)
    md = summary_md([n for n in names if n not in failed], seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / 'summary.md').write_text(md)
    print('\n' + md + f'\nall benchmarks: {(time.time() - t_all) / 60:.1f} min; wrote {RESULTS / "summary.md"}')
    if failed: sys.exit(f'failed: {", ".join(failed)}')


if __name__ == '__main__':
    main()
