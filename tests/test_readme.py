"""The README's shell blocks use only commands and flags that exist (each verb's --help lists each flag)."""

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from gptdeploy.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def shell_commands() -> list[list[str]]:
    """Every `gptdeploy ...` command in the README's bash blocks as its words (continuation lines joined, comments
    dropped, pipelines and `&&` lists split)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            command: list[str] = []
            for word in [*shlex.split(line, comments=True), "|"]:
                if word in ("|", "&&", ";"):
                    if command[:1] == ["gptdeploy"]:
                        commands.append(command)
                    command = []
                else:
                    command.append(word)
    return commands


def verb_and_flags(words: list[str]) -> tuple[list[str], list[str]]:
    """(['capi', 'build'], ['-o']) for `gptdeploy capi build -o DIR`: the subcommands, then every option used."""
    words, group, path = words[1:], main, []
    while words and hasattr(group, "commands") and words[0] in group.commands:
        group = group.commands[words[0]]
        path.append(words.pop(0))
    return path, [word.split("=", 1)[0] for word in words if word.startswith("-") and word != "-"]


COMMANDS = shell_commands()


def test_the_readme_has_commands_to_check():
    assert len(COMMANDS) >= 20 and ["gptdeploy", "demo", "--quick"] in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_every_readme_command_and_flag_exists(command):
    path, flags = verb_and_flags(command)
    assert path, f"{' '.join(command)!r} names no gptdeploy command"
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    missing = [flag for flag in flags if not re.search(rf"(^|[\s,/]){re.escape(flag)}([\s,=/]|$)", result.output, re.M)]
    assert not missing, f"`gptdeploy {' '.join(path)} --help` does not list {missing}"


def test_every_extra_the_readme_installs_exists():
    """`pip install -e ".[cpu,serve]"` only warns about an unknown extra and installs less than the text says."""
    import tomllib

    extras = set(tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = {name for group in re.findall(r"\[([a-z0-9_,-]+)\]\"", README.read_text()) for name in group.split(",")}
    assert named and named <= extras, f"the README installs extras pyproject.toml lacks: {sorted(named - extras)}"
