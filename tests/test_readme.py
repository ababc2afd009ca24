"""The README documents every option of every command, with the code's defaults."""

import re
import time
from pathlib import Path

import pytest
import typer

from mnist_batch.cli import app

README = (Path(__file__).parent.parent / "README.md").read_text()
CLI = typer.main.get_command(app)
COMMANDS = sorted(CLI.commands)


def options(command) -> list:
    """The options a user sees in the command's --help (Typer's own click types: compare by kind)."""
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden and p.name != "help"]


def section(name: str) -> str:
    """The README's '### name' section, up to the next heading."""
    match = re.search(rf"^### {name}\n(.*?)(?=^##)", README, re.S | re.M)
    assert match, f"README has no '### {name}' section"
    return match.group(1)


def table_defaults(text: str) -> dict[str, str]:
    """'| `--a`, `-b` | default | meaning |' rows -> {'--a': 'default', '-b': 'default'}."""
    defaults = {}
    for first, default in re.findall(r"^\| (`-[^|]+)\|([^|]*)\|", text, re.M):
        for name in re.findall(r"`(-[^`]+)`", first):
            defaults[name] = default.strip()
    return defaults


def readme_form(default) -> str:
    if default is None or default in ([], ()):
        return ""
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def test_every_global_option_is_in_the_readme():
    missing = [name for p in options(CLI) for name in p.opts if f"`{name}`" not in README]
    assert missing == []


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_in_its_commands_table_with_the_codes_default(command):
    documented = table_defaults(section(command))
    for option in options(CLI.commands[command]):
        for name in option.opts:
            assert name in documented, f"{command} {name} is not in the README's {command} table"
            assert documented[name].replace(",", "") == readme_form(option.default), (
                f"{command} {name}: README says {documented[name]!r}, the code {option.default!r}")


@pytest.mark.timeout(60)
def test_help_is_fast_and_reads_plainly(cli):
    started = time.perf_counter()
    result = cli("--help")
    assert result.exit_code == 0 and time.perf_counter() - started < 1.0
    assert "…" not in result.stdout and "--install-completion" in result.stdout
    for command in COMMANDS:
        text = cli(command, "--help").stdout
        assert not re.search(r"<(path|str|int|float|list\[str\])>\s", text.split("Options:")[1]), command
        assert "--no-" not in text, command
