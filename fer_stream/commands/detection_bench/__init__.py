"""``fer-stream bench --detection``: recall, false boxes and speed of each detector mode, by face size.

Everything is built from the user's own videos (:mod:`.footage`): frames in which the
short-range model finds one clear face give head-and-shoulder patches with a known face box;
every face any detector finds, at several scales, is kept out of the backgrounds and covered in
the hard negatives. Three sets of frames at 720p and 1080p (:mod:`.benchmark`):

- **scenes** (:mod:`.scenes`): still canvases with faces shrunk to 16-300 px at known places;
- **hard negatives** (:mod:`.negatives`): clips with no face at all, made of what surrounds faces
  (hair, necks, shoulders, hands, the covered heads themselves), at several scales;
- **sequences** (:mod:`.sequences`): clips of faces moving, zooming and tilting, entering and
  leaving the frame, with their true boxes in every frame, so that following faces is measured.

Each detector kind runs three ways (:mod:`.modes`): verifying and following faces with the face
landmark model (the default), verifying only, and plain. Scored as :mod:`.scoring` says: recall
by face height, false boxes per 100 frames, mislocated boxes, frames/s, and the landmark model's
cost per face.

>>> report = detection_benchmark(cfg, ["talk.mp4"], modes=modes(["tiled"]))               # doctest: +SKIP
>>> report["modes"]["tiled"]["1080p"]["sequences"]["recall_ge_40px"]                      # doctest: +SKIP
0.98
"""

from .benchmark import detection_benchmark, evaluate_kind
from .command import run_detection_bench
from .modes import VARIANTS, Mode, modes
from .report import format_report
from .scenes import CANVASES, Scene, make_scenes
from .scoring import BUCKETS, MATCH_IOU, SIZES

__all__ = [
    "BUCKETS",
    "CANVASES",
    "MATCH_IOU",
    "SIZES",
    "VARIANTS",
    "Mode",
    "Scene",
    "detection_benchmark",
    "evaluate_kind",
    "format_report",
    "make_scenes",
    "modes",
    "run_detection_bench",
]
