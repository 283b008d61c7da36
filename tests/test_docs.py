"""The documentation: README.md is the entry, docs/ holds the rest, and neither drifts from the code.

The settings reference in docs/configuration.md is generated from fer_stream/config.py's schema;
every relative link of the Markdown files points at a file (and heading) that exists; every flag of
every command is named somewhere in README.md or docs/.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from fer_stream.cli import main
from fer_stream.config import FLAGS, flag_name, reference_markdown, settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
MARKDOWN = [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "benchmarks" / "RESULTS.md", *PAGES]
COMMANDS: tuple[list[str], ...] = (
    [],  # a run: fer-stream [--source ...]
    ["batch"],
    ["fleet"],
    ["image"],
    ["bench"],
    ["parity"],
    ["eval"],
    ["export"],
    ["train"],
    ["review"],
    ["models", "pull"],
    ["config"],
)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_config_reference", DOCS / "make_config_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(markdown: str) -> str:
    """``markdown`` without fenced code blocks and code spans (links there are examples, not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def _slug(heading: str) -> str:
    """The anchor a code host (GitHub) gives a heading: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """The anchors of every heading of ``path``; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_the_configuration_page_holds_the_reference_generated_from_the_schema() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert page == _generator().with_reference(page, reference_markdown()), (
        "docs/configuration.md differs from the schema: run python docs/make_config_reference.py"
    )


def test_the_reference_lists_every_setting_with_its_flag() -> None:
    reference = reference_markdown()
    for dotted, _default, _help in settings():
        row = next((line for line in reference.splitlines() if line.startswith(f"| `{dotted}` |")), None)
        assert row, f"{dotted} is missing from the reference"
        if dotted in FLAGS:
            assert f"`{flag_name(dotted)}" in row, row
    assert '| `source.transport` | `"tcp"` | `--transport {tcp,udp,http}` | RTSP transport: tcp \\| udp \\| http |' in reference


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_and_headings_that_exist(path: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no such heading in {linked.relative_to(ROOT)}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_readme_is_a_short_entry_that_leads_to_every_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300, "README.md is the entry; move details to docs/"
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in PAGES:
        if page.name != "index.md":
            assert f"({page.name}" in index, f"docs/index.md does not link to {page.name}"
            assert f"(docs/{page.name}" in readme, f"README.md does not link to docs/{page.name}"


def test_every_flag_of_every_command_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    docs = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *PAGES])
    missing = []
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        for flag in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", capsys.readouterr().out)) - {"--help"}):
            if not re.search(re.escape(flag) + r"(?![\w-])", docs):
                missing.append(f"fer-stream {' '.join(command)} {flag}".replace("  ", " "))
    assert not missing, "flags no page names: " + ", ".join(missing)
