"""The --help pages: every flag's help line in plain words."""

import re

import pytest

from fer_stream import cli


def _help_entries(text):
    """``{"-q, --quiet": "no progress bar", ...}``: each option of a --help page with its whole help text."""
    entries, name = {}, None
    for line in text.splitlines():
        m = re.match(r"  (-\S.*?)(?:\s{2,}(.*))?$", line)
        if m:
            name = m.group(1).strip()
            entries[name] = (m.group(2) or "").strip()
        elif name and line.startswith(" " * 10):
            entries[name] = (entries[name] + " " + line.strip()).strip()
        else:
            name = None
    return entries


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_off_flag_says_in_plain_words_what_it_turns_off(command):
    if command == "models":
        parser = cli.make_parser("models")._subparsers._group_actions[0].choices["pull"]
    else:
        parser = cli.make_parser(command)
    entries = _help_entries(parser.format_help())
    assert entries, parser.format_help()
    for name, text in entries.items():
        assert text and "turn off" not in text, (name, text)
        if name.startswith("--no-") or name.startswith("--display, --no-display"):
            assert text.startswith(("no ", "skip ", "leave ", "show ")), (name, text)
    if "-q, --quiet" in entries:
        assert entries["-q, --quiet"] == "no progress bar"


def test_help_lines_of_the_run_command():
    entries = _help_entries(cli.make_parser("run").format_help())
    assert entries["-q, --quiet"] == "no progress bar"
    assert entries["--no-audio"] == "leave the input's audio out of the annotated MP4"
    assert entries["--no-warmup"].startswith("skip the warm-up batch")
    assert "--no-display: never" in entries["--display, --no-display"]
