"""The docs (README.md and docs/*.md) document every script, flag and environment variable, and the README's two
commands are the real ones."""

import re
import subprocess
import sys

import pytest

from conftest import DECOMMISSIONER, DEPLOYER, REGISTRATOR, ROOT, STATUS

README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
PAGES = sorted((ROOT / "docs").glob("*.md"))
PERFORMANCE = (ROOT / "docs" / "performance.md").read_text()
# Flags and variables may be documented on the front page or on a page of docs/.
DOCS = "\n".join([README] + [page.read_text() for page in PAGES])
README_MAX_BYTES = 15 * 1024


def help_text(script):
    return subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("script", [REGISTRATOR, DEPLOYER, STATUS, DECOMMISSIONER, ROOT / "deviceRunner.py"],
                         ids=lambda path: path.name)
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


def test_the_readme_names_the_benchmark_and_the_performance_page_shows_its_figures():
    assert "python3 tasks.py bench" in README and "(docs/performance.md)" in README
    assert "python3 tasks.py bench" in PERFORMANCE and "bench/run.py" in PERFORMANCE
    assert re.search(r"--parallel 16.*\d+(\.\d+)?x", PERFORMANCE)


def test_the_readme_is_a_front_page():
    assert len(README.encode()) <= README_MAX_BYTES


def without_code(text):
    """The text with fenced code blocks and inline code spans blanked out: links and headings there are not real."""
    lines, fence = [], None
    for line in text.splitlines():
        marker = re.match(r"\s*(```+|~~~+)", line)
        if fence is None and marker:
            fence = marker.group(1)[0] * 3
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            lines.append("")
        else:
            lines.append(re.sub(r"(`+).*?\1", "", line))
    return lines


def slug(heading):
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped (not - or _), spaces to hyphens."""
    text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    found, seen = set(), {}
    text = path.read_text()
    lines, fence = [], None
    for line in text.splitlines():  # headings, outside fenced code (inline code keeps its text in the slug)
        marker = re.match(r"\s*(```+|~~~+)", line)
        if fence is None and marker:
            fence = marker.group(1)[0] * 3
        elif fence is not None:
            fence = None if line.strip().startswith(fence) else fence
        else:
            lines.append(line)
    for line in lines:
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(path):
    for number, line in enumerate(without_code(path.read_text()), start=1):
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # not https:, mailto:, ...
                yield number, target


def test_the_slug_follows_github():
    assert slug("Device Deployment & Recall") == "device-deployment--recall"
    assert slug("--parallel") == "--parallel"
    assert slug("Why `helm lint` passes although the schema requires a device") == (
        "why-helm-lint-passes-although-the-schema-requires-a-device")
    assert slug("Maximo IoT: MQTT on port 443 and a private CA") == "maximo-iot-mqtt-on-port-443-and-a-private-ca"


@pytest.mark.parametrize("path", [README_PATH] + PAGES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(path):
    broken = []
    for number, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{path.name}:{number}: {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{path.name}:{number}: {target}: no such heading in {linked.name}")
    assert broken == []


def test_the_readme_links_every_docs_page_and_each_linked_page_exists():
    linked = {target.partition("#")[0] for _, target in relative_links(README_PATH)}
    pages = {target for target in linked if target.startswith("docs/")}
    assert sorted(page for page in pages if not (ROOT / page).is_file()) == []
    assert sorted(page.relative_to(ROOT).as_posix() for page in PAGES if page.relative_to(ROOT).as_posix() not in pages) == []
