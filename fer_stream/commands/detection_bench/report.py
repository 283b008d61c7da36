"""The benchmark's figures as text: per resolution, a summary row per mode, then recall by face height."""

from __future__ import annotations

from typing import Any

from fer_stream.errors import printable

from .scenes import CANVASES


def _num(v: object, fmt: str, width: int) -> str:
    return f"{v:>{width}{fmt}}" if isinstance(v, (int, float)) else f"{'-':>{width}}"


def format_report(report: dict[str, Any]) -> str:
    """One summary table per resolution (still scenes, hard negatives, moving sequences, the
    landmark model's cost), then the recall of scenes and sequences by face height."""
    modes = report["modes"]
    width = max([6, *(len(n) for n in modes)])
    lines = []
    for res in CANVASES:
        data = {s: report["data"][s][res] for s in ("scenes", "negatives", "sequences")}
        lines.append(
            f"{res}: scenes {data['scenes']['frames']} still frames ({data['scenes']['faces']} faces); hard negatives "
            f"{data['negatives']['frames']} frames (no face); sequences {data['sequences']['frames']} frames "
            f"({data['sequences']['faces']} true face boxes); IoU >= {report['match_iou']}"
        )
        lines.append(f"  {'':<{width}}  {'scenes':^23}  {'hard neg':^8}  {'sequences':^52}  {'landmarks':>9}")
        lines.append(
            f"  {'mode':<{width}}  >=40px >=80px FP/100fr  FP/100fr  >=40px >=80px FP/100fr mislocated frames/s detector%  ms/face"
        )
        for name, m in modes.items():
            sc, ng, sq = (m[res].get(s, {}) for s in ("scenes", "negatives", "sequences"))
            det = sq.get("detector_frames")
            lines.append(
                f"  {name:<{width}}  {_num(sc.get('recall_ge_40px'), '.3f', 6)} {_num(sc.get('recall_ge_80px'), '.3f', 6)} "
                f"{_num(sc.get('false_positives_per_100_frames'), '.2f', 8)}  {_num(ng.get('false_positives_per_100_frames'), '.2f', 8)}  "
                f"{_num(sq.get('recall_ge_40px'), '.3f', 6)} {_num(sq.get('recall_ge_80px'), '.3f', 6)} "
                f"{_num(sq.get('false_positives_per_100_frames'), '.2f', 8)} {_num(sq.get('mislocated'), 'd', 10)} "
                f"{_num(sq.get('fps'), '.1f', 8)} {_num(None if det is None else 100 * det, '.0f', 9)}  "
                f"{_num(m.get('landmarks', {}).get('ms_per_face'), '.2f', 7)}"
            )
        for section in ("scenes", "sequences"):
            buckets = report["buckets"]
            if not any(section in m[res] and "recall_by_height" in m[res][section] for m in modes.values()):
                continue
            lines.append(f"  {section}: recall by face height")
            lines.append(f"  {'mode':<{width}}  " + " ".join(f"{b:>9}" for b in buckets))
            for name, m in modes.items():
                by = m[res].get(section, {}).get("recall_by_height", {})
                lines.append(f"  {name:<{width}}  " + " ".join(_num(by.get(b), ".2f", 9) for b in buckets))
    lm = report["landmarks"]
    if lm["crops"]:
        lines.append(f"landmark model: {lm['ms_per_face']:.2f} ms per face over {lm['crops']} crops ({lm['runs_on']})")
    return "\n".join(printable(line) for line in lines)
