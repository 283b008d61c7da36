"""``fer-stream models pull``: both detector models and the classifier, fetched for offline use."""

from __future__ import annotations

import time

from fer_stream.config import Config


def pull_models(cfg: Config, *, force: bool) -> int:
    """Download both detector models into the cache and the classifier into the Hugging Face cache."""
    from fer_stream.model.detector_files import DETECTOR_MODELS, cached_detector_path, download_detector
    from fer_stream.model.hub import pull_classifier

    for kind in DETECTOR_MODELS:
        cached = cached_detector_path(kind)
        if force or not cached.is_file():
            t = time.monotonic()
            download_detector(cached, kind=kind)
            print(f"detector ({kind}-range): downloaded to {cached} ({cached.stat().st_size / 1e6:.1f} MB, {time.monotonic() - t:.1f} s)")
        else:
            print(f"detector ({kind}-range): already cached at {cached}")
    folder = pull_classifier(cfg.classifier.model)
    print(f"classifier: {cfg.classifier.model} ready at {folder}")
    return 0
