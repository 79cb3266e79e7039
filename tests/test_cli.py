import importlib
import subprocess
import sys

import pytest

from petool_lib.cli import COMMANDS, main


def test_every_command_has_a_main():
    for name, (module, _) in COMMANDS.items():
        assert callable(getattr(importlib.import_module(module), "main", None)), f"{name}: {module}.main missing"


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_is_an_error(capsys):
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_python_dash_m_dispatches_to_the_stage_cli():
    r = subprocess.run([sys.executable, "-m", "petool_lib", "evaluate", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--predictions" in r.stdout


@pytest.mark.parametrize("name", ["evaluate", "baselines"])
def test_light_commands_do_not_import_torch(name):
    code = f"import sys; from petool_lib.cli import COMMANDS; import importlib; importlib.import_module(COMMANDS['{name}'][0]); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"
