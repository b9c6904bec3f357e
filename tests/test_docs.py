"""The docs (README.md and docs/*.md) document every script, flag and environment variable, and the README's two
commands are the real ones."""

import re
import subprocess
import sys

import pytest

from conftest import DECOMMISSIONER, DEPLOYER, REGISTRATOR, ROOT, STATUS

README = (ROOT / "README.md").read_text()
# Flags and variables may be documented on the front page or on a page of docs/.
DOCS = "\n".join([README] + [page.read_text() for page in sorted((ROOT / "docs").glob("*.md"))])


def help_text(script):
    return subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("script", [REGISTRATOR, DEPLOYER, STATUS, DECOMMISSIONER], ids=lambda path: path.name)
def test_every_flag_of_each_script_is_documented(script):
    flags = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text(script))) - {"-h", "--help"}
    assert flags, "the help text lists no flags"
    missing = sorted(flag for flag in flags if f"`{flag}" not in DOCS and f"{flag}`" not in DOCS)
    assert missing == []
    assert script.name in DOCS


def test_every_environment_variable_the_registrator_reads_is_documented():
    variables = set(re.findall(r"\b(WIOTP_[A-Z_]+|REQUESTS_CA_BUNDLE)\b", help_text(REGISTRATOR)))
    assert "WIOTP_OPTIONS_HTTP_HOST" in variables
    assert sorted(v for v in variables if f"`{v}`" not in DOCS) == []


def test_the_readme_commands_are_the_ones_ci_and_tasks_run():
    assert "python3 tasks.py demo" in README and "python3 tasks.py test" in README
    assert "python3 tasks.py test" in (ROOT / ".ci" / "run").read_text()
    tasks = subprocess.run([sys.executable, str(ROOT / "tasks.py")], capture_output=True, text=True)
    assert tasks.returncode == 2 and "demo" in tasks.stderr and "test" in tasks.stderr


def test_the_readme_names_the_benchmark_and_shows_its_figures():
    assert "python3 tasks.py bench" in README and "bench/run.py" in README
    assert re.search(r"--parallel 16.*\d+(\.\d+)?x", README)
