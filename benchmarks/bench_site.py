"""Learning a site from reviewed faces: accuracy before and after ``train --from-review``.

A *site* is one camera's consistent way of seeing faces that no training augmentation covers.
This one is a ceiling camera at night (:func:`site_look`): the face seen from above (a keystone:
forehead wide, chin narrow, foreshortened) and rolled 30 degrees, lit by the camera's infrared
illuminator (a bright centre falling off to the edges, washed-out low contrast, grey),
slightly soft, with sensor noise. ``fer-stream train``'s ``--augment video`` has rotations
up to 15 degrees, linear side light and no perspective or radial light.

The faces are FER2013 crops the base model never saw: the shipped model's ``test.txt``
(2,872 crops). Of these, a stratified random 500 are the *review pool*; the other 2,372 are the
evaluation set, once as they are (the base data's held-out split) and once seen by the site.
For N = 100, 200 and 400, the first N faces of the pool, seen by the site, go into a review store
the way ``fer-stream --review`` writes one (crop, record with the base model's answer), each
labelled with its FER2013 class as a person would in ``fer-stream review``; then
``train --from-review STORE --model BASE`` (its defaults; the replay is BASE's training data)
makes a new model, timed, and both are scored on the site's and the original evaluation crops
(``fer-stream eval``'s figures).

    FER_STREAM_SHARED=../shared python benchmarks/bench_site.py --json site.json

Prints a Markdown table. Accuracy does not depend on the machine; the fine-tune's seconds do
(the table says how busy the machine was only if you tell it: ``--note``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "samples" / "models" / "fer2013-video"
SIZE = 64


def site_look(rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """The site's view of a face crop (any size, RGB uint8) as a 64x64 RGB uint8 crop."""
    n = 96
    img = cv2.resize(rgb, (n, n), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
    # Seen from above: the top edge stays wide, the bottom shrinks and rises (foreshortening).
    src = np.float32([[0, 0], [n, 0], [n, n], [0, n]])
    dst = np.float32([[0, 0], [n, 0], [0.8 * n, 0.86 * n], [0.2 * n, 0.86 * n]])
    warp = cv2.getPerspectiveTransform(src, dst)
    roll = np.vstack([cv2.getRotationMatrix2D((n / 2, n / 2), 30.0, 1.1), [0, 0, 1]])
    img = cv2.warpPerspective(img, (roll @ warp).astype(np.float32), (n, n), borderMode=cv2.BORDER_REPLICATE)
    grey = img.mean(axis=2, keepdims=True)
    # The infrared illuminator: a bright centre falling off to the edges, washed out, flat.
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    r2 = ((xx - n * 0.55) ** 2 + (yy - n * 0.4) ** 2) / (0.5 * n) ** 2
    gain = 0.75 + 0.5 * np.exp(-r2)[..., None]
    img = np.clip(0.5 + 0.55 * (grey * gain - 0.5), 0, 1) ** 0.75
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    img = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    img = img + rng.normal(0, 0.02, img.shape).astype(np.float32)
    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)  # (64, 64, 1): grey
    return np.repeat(out.reshape(SIZE, SIZE, 1), 3, axis=2)


def _read(path: Path) -> np.ndarray:
    from fer_stream.io.images import read_image

    return read_image(path)


def _stratified(lines: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` lines in the class proportions (first ``k`` of each class's shuffle), interleaved; and the rest."""
    rng = random.Random(seed)
    by: dict[str, list[str]] = {}
    for line in lines:
        by.setdefault(line.split("/")[0], []).append(line)
    for items in by.values():
        rng.shuffle(items)
    take = {c: round(n * len(v) / len(lines)) for c, v in by.items()}
    while sum(take.values()) != n:  # rounding: adjust the largest class
        big = max(take, key=lambda c: len(by[c]))
        take[big] += 1 if sum(take.values()) < n else -1
    pool = [x for c, v in by.items() for x in v[: take[c]]]
    rng.shuffle(pool)  # any prefix is a random sample
    chosen = set(pool)
    return pool, [x for x in lines if x not in chosen]


def _write_folder(root: Path, data: Path, lines: list[str], site: bool) -> None:
    """The crops of ``lines`` as ``root/CLASS/NAME.jpg`` (seen by the site or as they are, 64x64)."""
    for line in lines:
        rgb = _read(data / line)
        img = site_look(rgb, zlib.crc32(line.encode())) if site else cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
        out = root / line.split("/")[0] / (Path(line).stem + ".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])


def _store(root: Path, data: Path, lines: list[str], clf: Any) -> None:
    """A review store of ``lines`` seen by the site, as a run writes one, each face labelled with its class."""
    from fer_stream.io.review import ReviewStore

    store = ReviewStore.open(root, create=True)
    crops = [site_look(_read(data / line), zlib.crc32(line.encode())) for line in lines]
    probs = np.concatenate([clf.forward(clf.preprocess(crops[i : i + 32])) for i in range(0, len(crops), 32)])
    for line, crop, p in zip(lines, crops, probs):
        order = np.argsort(-p)
        record = {
            "source": "site-benchmark",
            "source_id": "ceiling",
            "model": str(BASE),
            "time": 0.0,
            "frame": 0,
            "track": None,
            "box": [0, 0, SIZE, SIZE],
            "label": clf.labels[order[0]],
            "confidence": round(float(p[order[0]]), 6),
            "flagged": bool(p[order[0]] < clf.threshold),
            "probs": {clf.labels[i]: round(float(p[i]), 6) for i in order},
            "fer2013": line,
        }
        fid = store.add(record, crop)
        store.label(fid, line.split("/")[0], by="bench_site")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(BASE), help="the base model (default the shipped fer2013-video)")
    ap.add_argument("--sizes", default="100,200,400", help="reviewed faces per fine-tune (default 100,200,400)")
    ap.add_argument("--pool", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="keep the stores, folders and models here (default a temporary folder)")
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--note", default="", help="a note for the table, e.g. how busy the machine was")
    ap.add_argument("--recipe", default="", help="fine-tune settings other than the defaults, e.g. lr=0.001,augment=basic,erase=0")
    a = ap.parse_args(argv)
    shared = Path(os.environ.get("FER_STREAM_SHARED", ROOT.parent / "shared"))
    data = shared / "datasets" / "fer2013-train"
    if not data.is_dir():
        print(f"no FER2013 crops at {data}; set FER_STREAM_SHARED", file=sys.stderr)
        return 2
    from fer_stream.build import make_classifier
    from fer_stream.commands.evaluate import evaluate
    from fer_stream.commands.finetune import SiteRecipe, fine_tune
    from fer_stream.config import load_config

    lines = (Path(a.model) / "test.txt").read_text(encoding="utf-8").split()
    pool, rest = _stratified(lines, a.pool, a.seed)
    sizes = [int(s) for s in a.sizes.split(",")]
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="fer-site-"))
    work.mkdir(parents=True, exist_ok=True)
    site_dir, plain_dir = work / "site-eval", work / "original-eval"
    if not site_dir.exists():
        _write_folder(site_dir, data, rest, site=True)
        _write_folder(plain_dir, data, rest, site=False)

    def score(model: str) -> dict[str, Any]:
        clf = make_classifier(load_config(None, {"classifier.model": model}))
        s, o = evaluate(clf, site_dir), evaluate(clf, plain_dir)
        return {"site": s["accuracy"], "site_macro_f1": s["macro_f1"], "original": o["accuracy"], "original_macro_f1": o["macro_f1"]}

    given = dict(kv.split("=", 1) for kv in a.recipe.split(",") if kv)
    recipe = SiteRecipe(seed=a.seed, **{k: type(getattr(SiteRecipe(), k))(v) for k, v in given.items()})
    base_clf = make_classifier(load_config(None, {"classifier.model": a.model}))
    rows: list[dict[str, Any]] = [{"reviewed": 0, "model": a.model, **score(a.model)}]
    for n in sizes:
        store = work / f"store-{n}"
        if not store.exists():
            _store(store, data, pool[:n], base_clf)
        out = work / f"model-{n}"
        if out.exists():
            shutil.rmtree(out)
        t0 = time.monotonic()
        s = fine_tune([str(store)], a.model, out, recipe, replay=str(data), progress=False)
        seconds = time.monotonic() - t0
        rows.append(
            {"reviewed": n, "model": str(out), "seconds": round(seconds, 1), "held_out": s["held_out"], "card": s, **score(str(out))}
        )
    b = rows[0]
    print(f"| reviewed faces | site accuracy | change | original held-out | change | fine-tune time |  {a.note}")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ds, do = r["site"] - b["site"], r["original"] - b["original"]
        t = f"{r['seconds']:.0f} s" if "seconds" in r else "-"
        print(f"| {r['reviewed'] or 'base'} | {r['site']:.1%} | {ds:+.1%} | {r['original']:.1%} | {do:+.1%} | {t} |")
    print(f"(site and original evaluation: {len(rest)} FER2013 test crops; review pool {len(pool)}; work folder {work})")
    if a.json:
        figures = {"rows": rows, "eval_images": len(rest), "pool": len(pool), "note": a.note, "recipe": a.recipe}
        Path(a.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
