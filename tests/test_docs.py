"""The docs match the code: every command is in the README and has truthful --help."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from pipeline.cli import main
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found.extend(all_commands(command, path))
        else:
            found.append(path)
    return found


COMMANDS = all_commands(main)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_is_documented_in_the_readme(command: tuple[str, ...]) -> None:
    assert f"`trends {' '.join(command)}" in README


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = run_cli(None, *command, "--help")
    assert result.exit_code == 0
    assert len(result.stdout.split("\n\n")[1].strip()) > 10  # a real description


def test_readme_shows_the_two_commands_and_exit_codes() -> None:
    assert "make run" in README and "make test" in README
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 75 |"):
        assert code in README


def test_every_setting_with_an_env_variable_in_the_readme_exists() -> None:
    from pipeline.config import SECTIONS

    for section, key in re.findall(r"`\[([a-z]+)\] ([a-z_]+)`", README):
        if section == "section":  # the generic "`[section] key`" in the prose
            continue
        assert section in SECTIONS
        assert key in SECTIONS[section].__dataclass_fields__, (section, key)


def test_python_dash_m_pipeline_is_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "Usage: trends" in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = run_cli(None, "nosuch")
    assert result.exit_code == 2
