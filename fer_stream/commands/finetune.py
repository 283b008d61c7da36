"""``fer-stream train --from-review DIR... --model BASE --out NEW``: teach a model the site it watches.

The faces people labelled in review stores (:mod:`fer_stream.io.review`; ``not_a_face`` and
``skip`` left out and counted) fine-tune BASE, mixed in every epoch with a replay of BASE's own
training data so that it does not forget what it knew. A fixed part of the reviewed faces is held
out (chosen by a hash of each face's id, so a face held out once stays held out as the store
grows) and so are BASE's held-out splits (its ``heldout.txt`` and ``test.txt``). NEW gets a model
card (``README.md``) and ``training.json`` with the accuracy of BASE and NEW on both held-out
parts, its calibration refitted on BASE's validation split, and ``model.onnx`` when BASE had one.

>>> fine_tune(["review/"], "samples/models/fer2013-video", "site-model/")   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from fer_stream.commands.augment import augment
from fer_stream.commands.evaluate import load_dataset, map_classes
from fer_stream.commands.training_parts import Cached, Loader, amp_dtype, calibrate, logits_of, save_model, tie_colour_channels
from fer_stream.errors import ConfigError, ModelError, SourceError, counted
from fer_stream.io.review import Reviewed, reviewed
from fer_stream.model.devices import resolve_device
from fer_stream.model.hub import _quiet_transformers, load_model, model_folder
from fer_stream.model.preprocess import TensorPreprocessor

MIN_REVIEWED = 10  # fewer labelled faces teach nothing worth a new model


@dataclass(frozen=True)
class SiteRecipe:
    """How a model is fine-tuned on reviewed faces (each a ``train --from-review`` flag)."""

    epochs: int = 40
    lr: float = 3e-4
    batch_size: int = 32
    replay_ratio: float = 1.0  # replayed training images per reviewed face in every epoch
    review_holdout: float = 0.2  # share of the reviewed faces held out to measure the result
    augment: str = "video"
    erase: float = 0.25
    label_smoothing: float = 0.05
    weight_decay: float = 0.05
    seed: int = 0
    amp: str = "auto"


def held_out(fid: str, share: float) -> bool:
    """Whether face ``fid`` is in the held-out part: a hash of its id, stable as a store grows.

    >>> sum(held_out(f"{i:016x}", 0.2) for i in range(1000))
    190
    """
    return int(hashlib.sha256(fid.encode()).hexdigest()[:8], 16) % 1000 < share * 1000


def split_reviewed(ids: tuple[str, ...], share: float) -> tuple[list[int], list[int]]:
    """Indices of the held-out and the training faces; a few faces whose hashes fall all on one side
    still give one face to each (the lowest hash held out, the highest trained on)."""
    held = [i for i, fid in enumerate(ids) if held_out(fid, share)]
    train = [i for i, fid in enumerate(ids) if not held_out(fid, share)]
    if len(ids) >= 2 and (not held or not train):
        rank = sorted(range(len(ids)), key=lambda i: hashlib.sha256(ids[i].encode()).hexdigest())
        if not held:
            held, train = [rank[0]], sorted(rank[1:])
        else:
            held, train = sorted(rank[:-1]), [rank[-1]]
    return held, train


def fine_tune(
    stores: list[str],
    base: str,
    out: str | Path,
    recipe: SiteRecipe = SiteRecipe(),
    *,
    replay: str | None = None,
    device: str = "auto",
    progress: bool = True,
    workers: int = 0,
) -> dict[str, Any]:
    """Fine-tune ``base`` on the faces labelled in ``stores``; writes NEW to ``out``, returns the figures."""
    started = time.monotonic()
    _quiet_transformers()
    rev = reviewed(stores)
    if len(rev) < MIN_REVIEWED:
        raise SourceError(
            f"the review stores hold {counted(len(rev), 'labelled face')} (need at least {MIN_REVIEWED}); "
            f"label more with fer-stream review {stores[0]}"
        )
    base_dir = model_folder(base)
    replay_root, replay_files, replay_names, base_splits = _replay_data(base_dir, replay)
    processor, net = load_model(base)  # its own head and labels: reviewed labels map onto them
    labels = [net.config.id2label[i] for i in range(net.config.num_labels)]
    index = {label: i for i, label in enumerate(labels)}
    to_label = map_classes(sorted(set(rev.labels)), tuple(labels))
    to_label_replay = map_classes(sorted(set(replay_names)), tuple(labels))
    pre = TensorPreprocessor.from_processor(processor)
    if pre is None:
        raise ModelError(f"'{base}' uses an image processor that crops; fine-tuning supports resize-and-normalize processors")

    held, train_rev = split_reviewed(rev.ids, recipe.review_holdout)
    if not train_rev or not held:
        raise SourceError(f"{counted(len(rev), 'labelled face')} leave nothing to train on or to hold out; label more faces")
    files = list(rev.files) + replay_files
    y = [index[to_label[label]] for label in rev.labels] + [index[to_label_replay[n]] for n in replay_names]
    n_rev = len(rev)
    replay_pool = [n_rev + i for i, f in enumerate(replay_files) if f.resolve() not in base_splits["excluded"]]
    checks = {k: [n_rev + i for i, f in enumerate(replay_files) if f.resolve() in v] for k, v in base_splits.items() if k != "excluded"}

    dev = resolve_device(device)
    torch.manual_seed(recipe.seed)
    raw = TensorPreprocessor(*pre.size, pre.mode, 1.0, torch.zeros(3), torch.ones(3))
    loader = Loader(files, y, raw, workers)
    norm = lambda x: x.mul(pre._mul).sub(pre._sub).contiguous(memory_format=torch.channels_last)
    net = net.to(dev)
    if dev.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    targets = torch.tensor(y)

    # The held-out faces and BASE's splits are scored before, after and in calibration: decode them once.
    scored = sorted(set(held).union(*checks.values()))
    at = {i: k for k, i in enumerate(scored)}
    scorer = Cached.decode(Loader([files[i] for i in scored], [y[i] for i in scored], raw, workers), len(scored))

    def accuracy(idx: list[int]) -> float | None:
        if not idx:
            return None
        logits = logits_of(net, scorer, [at[i] for i in idx], norm, dev)
        return round(float((logits.argmax(1) == targets[idx]).float().mean()), 4)

    phases = {"prepare": time.monotonic() - started}
    before = {"review_heldout": accuracy(held), **{k: accuracy(v) for k, v in checks.items()}}
    phases["score_before"] = time.monotonic() - started - sum(phases.values())
    tie_colour_channels(net)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    per_epoch = len(train_rev) + round(recipe.replay_ratio * len(train_rev))
    steps = recipe.epochs * max(1, math.ceil(per_epoch / recipe.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    amp = amp_dtype(recipe.amp, dev)
    gen = torch.Generator().manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    history = []
    for epoch in tqdm(range(recipe.epochs), desc="fine-tune", unit="epoch", disable=not progress):
        net.train()
        picked = train_rev + rng.sample(replay_pool, min(len(replay_pool), per_epoch - len(train_rev)))
        rng.shuffle(picked)
        total = 0.0
        for x, t in loader([picked[i : i + recipe.batch_size] for i in range(0, len(picked), recipe.batch_size)]):
            x = norm(augment(x, gen, recipe.augment, recipe.erase)).to(dev)
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                logits = net(pixel_values=x).logits.float()
            loss = loss_fn(logits, t.to(dev))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            total += float(loss.detach()) * len(t)
        history.append({"epoch": epoch + 1, "train_loss": round(total / len(picked), 5)})
    phases["train"] = time.monotonic() - started - sum(phases.values())
    after = {"review_heldout": accuracy(held), **{k: accuracy(v) for k, v in checks.items()}}
    phases["score_after"] = time.monotonic() - started - sum(phases.values())

    out = Path(out)
    save_model(net, processor, out)
    validation = [at[i] for i in checks.get("validation", [])]
    calibration = calibrate(out, scorer, validation, norm, dev, _target(base_dir)) if validation else None
    if calibration is None:
        _keep_calibration(base_dir, out)
    onnx = None
    if (base_dir / "model.onnx").is_file():
        from fer_stream.model.export import export_onnx

        onnx = export_onnx(str(out), out / "model.onnx")["path"]
    phases["save"] = time.monotonic() - started - sum(phases.values())
    summary = {
        "base": base,
        "out": str(out),
        "stores": list(rev.stores),
        "labels": labels,
        "reviewed": len(rev),
        "reviewed_by_label": {label: rev.labels.count(label) for label in sorted(set(rev.labels))},
        "not_a_face": rev.marks["not_a_face"],
        "skipped": rev.marks["skip"],
        "trained_on": len(train_rev),
        "held_out": len(held),
        "replay": {"data": str(replay_root), "pool": len(replay_pool), "per_epoch": per_epoch - len(train_rev)},
        "before": before,
        "after": after,
        "calibration": calibration,
        "onnx": onnx,
        "history": history,
        "recipe": asdict(recipe),
        "device": str(dev),
        "seconds": round(time.monotonic() - started, 1),
        "phases_s": {k: round(v, 1) for k, v in phases.items()},
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "review-heldout.txt").write_text("".join(rev.ids[i] + "\n" for i in held), encoding="utf-8")
    (out / "README.md").write_text(model_card(summary, rev), encoding="utf-8")
    return summary


def _replay_data(base_dir: Path, replay: str | None) -> tuple[Path, list[Path], list[str], dict[str, set[Path]]]:
    """BASE's training data (``replay``, else the ``data`` its training.json names) and its held-out
    splits: ``test`` (test.txt), ``validation`` (heldout.txt) and every path of both (``excluded``)."""
    root = Path(replay) if replay else _trained_on(base_dir)
    if root is None:
        raise ConfigError(
            f"cannot tell what '{base_dir}' was trained on; pass --replay DIR (its training data, one folder per class) "
            "so that fine-tuning does not make it forget"
        )
    if not root.is_dir():
        raise SourceError(f"replay data '{root}' does not exist; pass --replay DIR (the base model's training data)")
    files, names = load_dataset(root)
    splits: dict[str, set[Path]] = {}
    for key, name in (("test", "test.txt"), ("validation", "heldout.txt")):
        if (base_dir / name).is_file():
            splits[key] = {f.resolve() for f in load_dataset(root, base_dir / name)[0]}
    splits["excluded"] = set().union(*splits.values()) if splits else set()
    return root, files, names, splits


def _trained_on(base_dir: Path) -> Path | None:
    try:
        data = json.loads((base_dir / "training.json").read_text(encoding="utf-8")).get("data")
    except (OSError, ValueError):
        return None
    return Path(data) if isinstance(data, str) else None


def _target(base_dir: Path) -> float:
    """The accuracy BASE's threshold was chosen for (0.85 if it says none)."""
    try:
        own = json.loads((base_dir / "config.json").read_text(encoding="utf-8")).get("fer_stream", {})
        return float(own.get("target_accuracy", 0.85))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.85


def _keep_calibration(base_dir: Path, out: Path) -> None:
    """No validation split to refit on: NEW keeps BASE's temperature and threshold."""
    try:
        own = json.loads((base_dir / "config.json").read_text(encoding="utf-8")).get("fer_stream")
    except (OSError, ValueError):
        return
    if isinstance(own, dict):
        path = out / "config.json"
        config = json.loads(path.read_text(encoding="utf-8"))
        config["fer_stream"] = own
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def check_out(out: str, base: str) -> None:
    """NEW must be a new (or empty) folder, never BASE: nothing the user did not name is replaced."""
    p = Path(out)
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise ConfigError(f"--out '{out}' already exists and is not an empty folder; name a new folder for the fine-tuned model")
    if Path(base).exists() and p.resolve() == Path(base).resolve():
        raise ConfigError("--out is the base model's folder; name a new folder for the fine-tuned model")
    if not p.parent.is_dir():
        raise ConfigError(f"cannot write '{out}': folder '{p.parent}' does not exist")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def model_card(s: dict[str, Any], rev: Reviewed) -> str:
    """NEW's README.md: what it was tuned on and how it compares with its base."""
    b, a = s["before"], s["after"]
    rows = [("reviewed faces held out", "review_heldout", s["held_out"])]
    rows += [(f"base's {k} split", k, None) for k in ("test", "validation") if k in b]
    table = "\n".join(f"| {name} | {_pct(b[k])} | {_pct(a[k])} |" for name, k, _ in rows)
    mix = ", ".join(f"{label} {n}" for label, n in s["reviewed_by_label"].items())
    return f"""# {Path(s["out"]).name}: {Path(s["base"]).name} fine-tuned on reviewed faces

Made by `fer-stream train --from-review {" ".join(s["stores"])} --model {s["base"]} --out {s["out"]}`
in {s["seconds"]:.0f} s on {s["device"]}.

- **Reviewed faces**: {s["reviewed"]} labelled ({mix}); {s["trained_on"]} trained on, {s["held_out"]} held out
  (by a hash of each face's id: `review-heldout.txt`). Left out: {s["not_a_face"]} marked *not a face*
  (detector errors worth knowing about) and {s["skipped"]} skipped.
- **Replay**: every epoch, {s["replay"]["per_epoch"]} images drawn from the base's training data
  (`{s["replay"]["data"]}`, {s["replay"]["pool"]} images, its held-out splits left out), so the model keeps what it knew.
- **Recipe**: {s["recipe"]["epochs"]} epochs, AdamW at {s["recipe"]["lr"]:g} with a cosine decay, batches of
  {s["recipe"]["batch_size"]}, augmentation `{s["recipe"]["augment"]}`, label smoothing {s["recipe"]["label_smoothing"]:g}.

## Accuracy, base and fine-tuned

| measured on | {Path(s["base"]).name} | this model |
| --- | --- | --- |
{table}

{_calibration_line(s)}

Score it again on any store with `fer-stream eval --from-review DIR --model {s["out"]}`. The held-out
reviewed faces are few: {s["held_out"]} faces give a figure good to about
+-{100 * 1.96 * math.sqrt(0.25 / max(1, s["held_out"])):.0f} points (95 %).
"""


def _calibration_line(s: dict[str, Any]) -> str:
    c = s["calibration"]
    if not c:
        return "Calibration: the base model's temperature and threshold, kept (no validation split to refit them on)."
    return (
        f"Calibration refitted on the base's validation split: temperature {c['temperature']}, threshold "
        f"{c['threshold']} (expected calibration error {c['ece_before']} before, {c['ece_after']} after)."
    )
