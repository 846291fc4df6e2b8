"""Processes: wall time of one `dpo-imdb run` as 1 process and as N processes (`accelerate launch`), per stage.

Runs `dpo-imdb run --preset P` in a subprocess, once as a single process and once per N in `--processes` under
`accelerate launch --config_file accelerate_configs/cpu.yaml --num_processes N` (gloo on the CPU), interleaved over
`--repeats` (1, N, 1, N, ...) so that machine load hits both alike. Every process gets `--threads` OpenMP threads.
Reports the wall time (start-up included) and each stage's seconds from the run's manifests, and checks that every
run wrote the same triplets, byte for byte.
"""
import hashlib, shutil, subprocess, sys, tempfile, time
from _common import *

STAGES = ('setup', 'prompts', 'generate', 'score', 'triplets', 'train', 'evaluate')


def command(n: int, preset: str, out: Path) -> list[str]:
    args = ['-m', 'dpo_imdb.cli', 'run', '--preset', preset, '--out', str(out)]
    if n == 1: return [sys.executable, *args]
    return [sys.executable, '-m', 'accelerate.commands.launch', '--config_file', str(ROOT / 'accelerate_configs' / 'cpu.yaml'),
            '--num_processes', str(n), '--main_process_port', '0', *args]


def one_run(n: int, preset: str, threads: int, work: Path, tag: str) -> dict:
    out = work / f'run-{tag}'
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'PYTHONPATH': str(ROOT)}
    log = open(work / f'run-{tag}.log', 'w')
    start_load, t0 = load(), time.perf_counter()
    status = subprocess.run(command(n, preset, out), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                            timeout=3600).returncode
    seconds = time.perf_counter() - t0
    if status: raise RuntimeError(f'run failed with status {status}; see {log.name}')
    stages = {s: json.loads((out / s / 'manifest.json').read_text())['seconds'] for s in STAGES}
    triplets = hashlib.sha256((out / 'triplets' / 'triplets.jsonl').read_bytes()).hexdigest()
    shutil.rmtree(out)
    return {'processes': n, 'wall_seconds': seconds, 'stages': stages, 'triplets_sha256': triplets,
            'load_start': start_load, 'load_end': load()}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument('--preset', default='test', help='preset to run (test: about 30 s; demo: a few minutes)')
    p.add_argument('--processes', default='2', help='comma-separated process counts besides 1')
    p.set_defaults(threads=1)
    args = p.parse_args()
    counts = [1] + [int(n) for n in args.processes.split(',')]
    if args.quick: args.repeats = 1
    info = machine()
    info['torch_threads'] = args.threads
    banner('processes (dpo-imdb run)', info, preset=args.preset, processes=counts, repeats=args.repeats)
    work = Path(tempfile.mkdtemp(prefix='bench-processes-'))
    runs = []
    for r in range(args.repeats):
        for n in counts:
            runs.append(one_run(n, args.preset, args.threads, work, f'{n}-{r}'))
            print(f"  repeat {r}, {n} process(es): {runs[-1]['wall_seconds']:.1f} s (load {runs[-1]['load_start']} -> "
                  f"{runs[-1]['load_end']})", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    assert len({r['triplets_sha256'] for r in runs}) == 1, 'the runs wrote different triplets'
    rows = []
    for s in STAGES:
        rows.append([s] + [median([r['stages'][s] for r in runs if r['processes'] == n]) for n in counts])
    rows.append(['whole run (wall, incl. start-up)'] + [median([r['wall_seconds'] for r in runs if r['processes'] == n])
                                                        for n in counts])
    print(table(['stage (median s)'] + [f'{n} process' + ('es' if n > 1 else '') for n in counts], rows))
    print(f'triplets identical in all {len(runs)} runs; load now {load()}')
    write_result(f'processes_{args.preset}', {'machine': info, 'args': vars(args), 'runs': runs, 'table': rows}, args.out)


if __name__ == '__main__':
    main()
