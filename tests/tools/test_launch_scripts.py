"""tools/*.sh pick their Python like the README's commands (the repository's
.venv, unless PYTHON says otherwise), not whatever `python` is on PATH."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

SCRIPTS = ('dist_train.sh', 'dist_test.sh', 'slurm_train.sh',
           'slurm_test.sh')

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='bash')


def _chosen(tools_dir, **env):
    """$PYTHON after sourcing find_python.sh, and what it printed."""
    proc = subprocess.run(
        ['bash', '-c', f'source {tools_dir}/find_python.sh; echo "$PYTHON"'],
        env=dict({'PATH': '/usr/bin:/bin'}, **env), capture_output=True,
        text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip(), proc.stderr.strip()


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_run_the_chosen_python(repo_root, script):
    with open(osp.join(repo_root, 'tools', script)) as f:
        lines = f.read().splitlines()
    assert 'source "$(dirname "$0")/find_python.sh"' in lines
    # The one interpreter call: torchrun, or srun's `python -u tool.py`.
    runs = [line.strip() for line in lines
            if '-m torch.distributed.run' in line or ' -u "$(dirname' in line]
    assert len(runs) == 1 and runs[0].startswith('"$PYTHON" '), runs
    assert not any(line.lstrip().startswith('python') for line in lines)


def test_repository_venv_is_preferred(repo_root):
    venv_python = osp.join(repo_root, '.venv', 'bin', 'python')
    if not os.access(venv_python, os.X_OK):
        pytest.skip('no .venv in this checkout')
    python, said = _chosen(osp.join(repo_root, 'tools'))
    assert python == venv_python
    assert said == f'bash: using Python {venv_python}'


def test_explicit_python_wins(repo_root):
    python, said = _chosen(
        osp.join(repo_root, 'tools'), PYTHON=sys.executable)
    assert python == sys.executable
    assert said.endswith(f'using Python {sys.executable}')


def test_without_venv_python3_is_used(repo_root, tmp_path):
    tools = tmp_path / 'tools'
    tools.mkdir()
    shutil.copy(osp.join(repo_root, 'tools', 'find_python.sh'), tools)
    if shutil.which('python3', path='/usr/bin:/bin') is None:
        pytest.skip('no python3 in /usr/bin:/bin')
    assert _chosen(str(tools))[0] == 'python3'


def test_missing_interpreter_is_a_clear_error(repo_root):
    proc = subprocess.run(
        ['bash', osp.join(repo_root, 'tools', 'dist_train.sh'), 'cfg.py',
         '1'], env={'PATH': '/usr/bin:/bin', 'PYTHON': '/no/such/python'},
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 127
    assert proc.stderr.strip() == (
        "dist_train.sh: no Python interpreter '/no/such/python'; set "
        'PYTHON=/path/to/python')
