"Checks on the project itself: the CI runs the README's command, the package builds, the CLI answers."
import re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def test_ci_runs_the_readme_test_command():
    readme = (ROOT/'README.md').read_text()
    commands = re.findall(r'^pip install -e "\.\[dev\]" && .*nbdev_test.*$', readme, flags=re.M)
    assert len(commands) == 1, 'README.md must give exactly one test command'
    assert 'nbdev_test --flags slow' in commands[0] and 'pytest' in commands[0]
    assert "grep -m1 -E '^pip install -e" in (ROOT/'.ci'/'run').read_text()
    ci = (ROOT/'.ci'/'run').read_text()
    pattern = re.search(r"grep -m1 -E '(.+?)' README.md", ci).group(1)
    assert re.search(pattern, commands[0])

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
    assert res.stderr.strip() == 'dpo-imdb: error: RunConfig.beta must be > 0 (it scales the implicit reward; 0.1 is usual) (got -1.0)'
    assert 'Traceback' not in res.stderr
