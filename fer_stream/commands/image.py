"""``fer-stream image``: the faces in still images and their emotions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fer_stream.build import load_models
from fer_stream.commands.options import model_flags
from fer_stream.config import Config
from fer_stream.errors import SourceError, printable
from fer_stream.frames import Box, Face


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream image",
        description="Find the faces in still images and print each face's box and its emotions, most likely first.",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (.jpg, .png, ...)")
    p.add_argument("--dir", metavar="FOLDER", help="also every image in FOLDER")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--no-detect",
        dest="detect",
        action="store_false",
        help="no face detection: classify each whole image as one face (for ready-cropped faces)",
    )
    model_flags(p)
    return p


def handle(cfg: Config, args: argparse.Namespace) -> int:
    return classify_images(cfg, args.images, args.dir, detect=args.detect, as_json=args.json)


def classify_images(cfg: Config, paths: Sequence[str], folder: str | None, *, detect: bool, as_json: bool) -> int:
    """Print the faces and their 7 emotions for each image."""
    # cv2 at their tops: loaded when images are read, not for ``fer-stream image --help``
    from fer_stream.io.images import IMAGE_SUFFIXES, check_image_file, image_chunks, list_images, read_image

    files = [Path(p) for p in paths]
    if folder:
        found = list_images(folder)
        if not found:
            raise SourceError(f"folder '{folder}' holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
        files += found
    if not files:
        raise SourceError("no images given; pass image files or --dir FOLDER")
    for f in files:
        check_image_file(f)  # before the models load
    clf, det = load_models(cfg, detector=detect, follow=False)  # each image on its own
    if det is None:  # ready-cropped faces: each image is one face, checked for quality like a detected one
        from fer_stream.model.quality import QualityGate  # cv2 at its top

        q = cfg.quality
        gate = QualityGate(q.min_face_px, q.min_sharpness, 0.0)
    doc: list[dict[str, Any]] = []
    failed = 0
    try:
        # In chunks bounded by pixels, not count: a folder of large photos never sits in memory at
        # once (with --no-detect each image is held whole until its chunk is classified); batches
        # still span images.
        for chunk in image_chunks(files):
            per_image: list[tuple[Path, list[Face]]] = []
            for f in chunk:
                try:
                    image = read_image(f)
                except SourceError as e:  # one bad image is reported; the others go on
                    failed += 1
                    print(f"fer-stream: warning: skipped {printable(str(e))}", file=sys.stderr)
                    doc.append({"image": str(f), "error": str(e)})
                    continue
                if det is not None:
                    faces = det.detect(image)
                else:
                    box = Box(0, 0, image.shape[1], image.shape[0])
                    faces = [Face(box, 1.0, np.ascontiguousarray(image), quality=gate.assess(image, box, 1.0))]
                per_image.append((f, faces))
                del image
            crops = [face.crop for _, faces in per_image for face in faces if face.usable and face.crop is not None]
            predictions = iter(clf.predict(crops))
            for f, faces in per_image:
                faces = [face.with_prediction(next(predictions)) if face.usable else face for face in faces]
                if as_json:
                    doc.append({"image": str(f), "faces": [_face_json(face, detect) for face in faces]})
                else:
                    _print_image(f, faces, detect)
    finally:
        if det is not None:
            det.close()
    if as_json:
        print(json.dumps(doc, indent=2))
    return 1 if failed else 0


def _print_image(f: Path, faces: list[Any], detect: bool) -> None:
    if not faces:
        print(f"{printable(str(f))}: no face found")
        return
    print(f"{printable(str(f))}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
    for i, face in enumerate(faces, 1):
        p = face.prediction
        b = face.box
        where = f"box x={b.x} y={b.y} w={b.w} h={b.h}" if detect else "whole image"
        if p is None:
            q = face.quality
            print(
                f"  face {i}: {where}  unusable ({q.reason}: {q.size_px} px, sharpness {q.sharpness:g}, "
                f"score {q.score:.2f}); not classified"
            )
            continue
        flag = "  (low confidence)" if p.flagged else ""
        print(f"  face {i}: {where}{flag}")
        for label, prob in p.probs:
            print(f"    {printable(label):<10} {prob:6.1%}")


def _face_json(face: Any, detected: bool) -> dict[str, Any]:
    """A face as the event log writes it, without track and freshness (no tracks in still images)."""
    out = {k: v for k, v in face.record().items() if k not in ("track", "fresh")}
    if not detected:
        out["score"] = None  # the whole image, not a detection
    return out
