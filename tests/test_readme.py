"""The README and docs/: every option of every command documented with the code's defaults, links
that resolve, help that reads plainly. Options come from the click command objects, never from
rendered help text, which differs between Typer releases."""

import inspect
import re
import time
from pathlib import Path

import pytest
import typer
from typer.models import OptionInfo
from typer.testing import CliRunner

from mnist_batch.cli import app

REPO = Path(__file__).parent.parent
README = (REPO / "README.md").read_text()
CLI_DOC = REPO / "docs" / "cli.md"  # the commands' option tables and the global options
CLI = typer.main.get_command(app)
COMMANDS = sorted(CLI.commands)
LINK = re.compile(r"\]\(([^)\s]+)\)|<a href=\"([^\"]+)\"|<img src=\"([^\"]+)\"")


def options(command) -> list:
    """The options a user sees in the command's --help (Typer's own click types: compare by kind)."""
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden and p.name != "help"]


def section(name: str) -> str:
    """docs/cli.md's '### name' section, up to the next heading."""
    match = re.search(rf"^### {name}\n(.*?)(?=^##)", CLI_DOC.read_text(), re.S | re.M)
    assert match, f"docs/cli.md has no '### {name}' section"
    return match.group(1)


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def links(markdown: Path) -> list[str]:
    """Relative links of a Markdown file (web addresses left out)."""
    found = ["".join(groups) for groups in LINK.findall(markdown.read_text())]
    return [link for link in found if not re.match(r"[a-z]+:", link)]


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
    missing = [name for p in options(CLI) for name in p.opts if f"`{name}`" not in CLI_DOC.read_text()]
    assert missing == []


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_in_its_commands_table_with_the_codes_default(command):
    documented = table_defaults(section(command))
    for option in options(CLI.commands[command]):
        for name in option.opts:
            assert name in documented, f"{command} {name} is not in docs/cli.md's {command} table"
            assert documented[name].replace(",", "") == readme_form(option.default), (
                f"{command} {name}: docs/cli.md says {documented[name]!r}, the code {option.default!r}")


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


@pytest.mark.parametrize("command", COMMANDS)
def test_arguments_read_as_their_metavar_alone(cli, command):
    """Typer 0.2x showed `FILE|DIR <list[str]>`: the Python type, not what to type."""
    text = cli(command, "--help").stdout
    assert not re.search(r"<[\w\[\]|]+>", text.split("Options:")[0]), text
    for argument in (p for p in CLI.commands[command].params if p.param_type_name == "argument"):
        plain = f"{argument.metavar}..." if argument.required else f"[{argument.metavar}]..."
        assert f"[OPTIONS] {plain}" in text.splitlines()[0] and f"\n  {plain}  " in text, text


@pytest.mark.parametrize("command", COMMANDS)
def test_help_examples_stay_whole_at_80_columns(command):
    """Each example command is one line of the help, not wrapped mid-command."""
    examples = [line.strip() for line in inspect.cleandoc(CLI.commands[command].help).splitlines()
                if line.strip().startswith("mnist-batch ")]
    text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"}).stdout
    shown_lines = text.splitlines()
    assert examples and max(len(line) for line in shown_lines) <= 80
    for example in examples:
        assert example in [line.strip() for line in shown_lines], f"{command}: {example!r} wraps:\n{text}"


def test_no_flag_is_spelt_by_typers_reading_of_its_metavar():
    """Typer 0.27 turned a metavar that spells the option's name into its flag (`--ADDRESS`)."""
    for registered in app.registered_commands:
        for name, parameter in inspect.signature(registered.callback).parameters.items():
            info = parameter.default
            if isinstance(info, OptionInfo) and info.metavar and info.metavar.lower() == name.replace("_", "-"):
                assert info.param_decls, f"{registered.name} {name}: name the flag, e.g. '--{name}'"


def test_the_readme_links_every_docs_page_and_every_link_resolves():
    pages = sorted((REPO / "docs").glob("*.md"))
    readme_links = links(REPO / "README.md")
    unlinked = [p.name for p in pages if f"docs/{p.name}" not in {link.split("#")[0] for link in readme_links}]
    assert unlinked == []
    broken = []
    for markdown in [REPO / "README.md", *pages]:
        for link in links(markdown):
            target, _, fragment = link.partition("#")
            path = (markdown.parent / target).resolve() if target else markdown
            if not path.exists():
                broken.append(f"{markdown.name}: {link}")
            elif fragment and path.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
                if fragment not in {anchor(h) for h in headings}:
                    broken.append(f"{markdown.name}: {link} (no such heading)")
    assert broken == []
