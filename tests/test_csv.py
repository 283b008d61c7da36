"""CSV outputs: a text cell a spreadsheet would run as a formula is quoted; numbers stay numbers."""

from __future__ import annotations

import csv

from conftest import scored_face as _face
from conftest import timed_result as _frame

from fer_stream.io.report import TimelineSink, write_timeline
from fer_stream.io.sinks import EventSink, spreadsheet_safe


def test_text_cells_that_start_like_a_formula_are_quoted_and_numbers_stay_numbers():
    for text in ("=1+2", "+1", "-sad", "@SUM(A1)", "\tx", "\rx"):
        assert spreadsheet_safe(text) == "'" + text
    for kept in ("happy", "", '{"=": 1}', "[-3, 4]"):
        assert spreadsheet_safe(kept) == kept
    assert spreadsheet_safe(-0.5) == -0.5 and spreadsheet_safe(-3) == -3


def test_event_and_timeline_csv_never_start_a_text_cell_with_a_formula(tmp_path):
    labels = ('=HYPERLINK("http://evil")', "-sad", "@cmd", "happy")
    probs = {labels[0]: 0.6, labels[1]: 0.2, labels[2]: 0.1, labels[3]: 0.1}
    events = tmp_path / "e.csv"
    timeline = TimelineSink(labels)
    with EventSink(events, source_id="+door") as sink:
        for i in range(6):
            result = _frame(i, -0.5 + i * 0.5, [_face(3, probs)])
            sink.write(result)
            timeline.write(result)
    write_timeline(tmp_path / "t.csv", timeline)
    for path in (events, tmp_path / "t.csv"):
        rows = list(csv.reader(path.open(newline="")))
        cells = [cell for row in rows for cell in row]
        for cell in cells:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only a number may start so
        assert any(cell.startswith("'=HYPERLINK") for cell in cells)
    rows = list(csv.DictReader(events.open(newline="")))
    assert rows[0]["time"] == "-0.5" and rows[0]["source"] == "'+door" and rows[0]["label"] == '\'=HYPERLINK("http://evil")'
    header = next(csv.reader((tmp_path / "t.csv").open(newline="")))
    assert header == ["time_s", "track", "faces", "dominant", '\'=HYPERLINK("http://evil")', "'-sad", "'@cmd", "happy", "span_s"]
