"Checks on the project itself: the CI runs the README's command, the package builds, the CLI answers."
import inspect, re, shlex, subprocess, sys
from configparser import ConfigParser
from importlib.metadata import version
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def test_ci_runs_the_readme_test_command():
    readme = (ROOT/'README.md').read_text()
    commands = re.findall(r'^pip install -c constraints.txt -e "\.\[dev\]" && .*nbdev_test.*$', readme, flags=re.M)
    assert len(commands) == 1, 'README.md must give exactly one test command, installing the lock'
    assert 'nbdev_test --flags slow' in commands[0] and 'pytest' in commands[0]
    for ci in (ROOT/'.ci'/'run', ROOT/'.github'/'workflows'/'test.yaml'):     # both find it, and install the lock
        text = ci.read_text()
        pattern = re.search(r"grep -m1 -E '(.+?)' README.md", text).group(1)
        assert re.search(pattern, commands[0]), f'{ci.name} does not find the README test command'
        assert re.search(r'pip install (-q )?-c constraints.txt -e "\.\[dev\]"', text), f'{ci.name} does not install the lock'

def test_readme_is_generated_from_index():
    res = subprocess.run([sys.executable, str(ROOT/'tools'/'readme.py'), '--check'], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr

def test_cli_bad_config_is_one_clear_line(tmp_path):
    bad = tmp_path/'cfg.json'
    bad.write_text('{"beta": -1, "name": "demo"}')
    res = subprocess.run([sys.executable, '-c', 'import sys; from dpo_imdb.cli import main; sys.exit(main())', 'run',
                          '--config', str(bad)], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip() == (f'dpo-imdb: error: config file {bad}: beta must be > 0 (it scales the implicit reward; '
                                  '0.1 is usual) (got -1.0)')      # the file's field, not a flag that was never typed
    assert 'Traceback' not in res.stderr

def _requirements() -> dict:
    "settings.ini's runtime requirements, by package name."
    from packaging.requirements import Requirement
    cp = ConfigParser(delimiters=['=']); cp.read(ROOT/'settings.ini', encoding='utf-8')
    reqs = [Requirement(r) for r in shlex.split(cp['DEFAULT']['requirements'])]
    return {r.name.lower(): r for r in reqs}

def test_installed_packages_meet_the_declared_requirements():
    bad = {name: version(name) for name, r in _requirements().items() if not r.specifier.contains(version(name), prereleases=True)}
    assert not bad, f'installed versions outside settings.ini requirements: {bad}'

def test_the_lock_pins_every_requirement_within_its_range():
    "constraints.txt (tools/lock.py) pins each runtime and dev requirement to one version that settings.ini admits."
    from packaging.requirements import Requirement
    sys.path.insert(0, str(ROOT/'tools'))
    import lock
    pins = lock.read()
    cp = ConfigParser(delimiters=['=']); cp.read(ROOT/'settings.ini', encoding='utf-8')
    reqs = [Requirement(r) for r in shlex.split(cp['DEFAULT']['requirements']) + cp['DEFAULT']['dev_requirements'].split()]
    for r in reqs:
        name = lock.canonical(r.name)
        assert name in pins, f'{name} is not in constraints.txt: run python tools/lock.py'
        assert r.specifier.contains(pins[name], prereleases=True), f'constraints.txt pins {name}=={pins[name]}, outside {r}'
    assert pins['torch'] == '2.13.0', 'the lock must keep the CPU wheel .ci/run installs'
    assert all(p == p.strip() and re.fullmatch(r'[\w.!+-]+', p) for p in pins.values())

def test_trl_pinned_to_the_minor_whose_private_hooks_training_overrides():
    "training.TripletDPOTrainer overrides two private DPOTrainer methods: pin trl's minor, and check they are still there."
    from packaging.version import Version
    import trl
    from trl import DPOTrainer
    from dpo_imdb.training import TripletDPOTrainer
    spec = _requirements()['trl'].specifier
    lo = Version(trl.__version__)
    assert lo in spec, f'trl {trl.__version__} is outside the supported {spec}'
    assert Version(f'{lo.major}.{lo.minor + 1}') not in spec, f'{spec} must pin one trl minor version'
    init = inspect.getsource(DPOTrainer.__init__)
    for name in ('_prepare_dataset', '_precompute_ref_logps'):
        assert f'self.{name}(' in init, f"trl's DPOTrainer.__init__ no longer calls {name}"
        theirs = list(inspect.signature(getattr(DPOTrainer, name)).parameters)
        ours = list(inspect.signature(getattr(TripletDPOTrainer, name)).parameters)
        assert theirs == ours, f'DPOTrainer.{name}{theirs} != TripletDPOTrainer.{name}{ours}'

def test_the_sidebar_lists_every_notebook_once():
    "nbs/sidebar.yml (custom_sidebar: a course and its internals) names each notebook of nbs/ exactly once."
    import yaml
    def names(items):
        for item in items:
            if isinstance(item, str): yield item
            else: yield from names(item.get('contents', []))
    listed = list(names(yaml.safe_load((ROOT/'nbs'/'sidebar.yml').read_text())['website']['sidebar']['contents']))
    notebooks = sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))
    assert sorted(listed) == notebooks, set(listed) ^ set(notebooks)
    cp = ConfigParser(delimiters=['=']); cp.read(ROOT/'settings.ini', encoding='utf-8')
    assert cp['DEFAULT']['custom_sidebar'] == 'True', 'nbdev would rewrite the sidebar without its sections'

def test_the_measured_results_the_package_ships_are_the_committed_ones():
    "dpo_imdb/measured/ (package data: what the notebooks show, in Colab too) holds copies of bench/measured/ files."
    shipped = sorted((ROOT/'dpo_imdb'/'measured').iterdir())
    assert shipped, 'dpo_imdb/measured/ is empty'
    cp = ConfigParser(delimiters=['=']); cp.read(ROOT/'settings.ini', encoding='utf-8')
    patterns = cp['DEFAULT']['package_data'].split()
    for f in shipped:
        assert any(f.match(p) for p in patterns), f'{f.name} is not package data: add it to settings.ini package_data'
        if f.name != 'frontier_demo_points.json':           # measured on this project's CPU (07_evaluation, index)
            assert f.read_bytes() == (ROOT/'bench'/'measured'/f.name).read_bytes(), f'{f.name} differs from bench/measured/'

