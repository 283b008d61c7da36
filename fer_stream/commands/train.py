"""``fer-stream train``: fine-tune any Hugging Face image classifier on a folder-per-class data set.

The recipe of the system this project grew from: random flips, colour jitter and small affine
changes (rotation, shift, scale); cross-entropy weighted by the inverse class frequencies, with
label smoothing; AdamW with cosine annealing and warm restarts; gradient clipping; mixed precision
on accelerators; gradient accumulation; a held-out validation split (stratified by class). The
best epoch by validation accuracy is saved with ``save_pretrained`` (labels from the folder
names, the base model's image processor beside it), ready for every other command; ``OUT/last``
holds the latest epoch and the optimizer state, from which ``--resume`` continues.

Augmentation is written with torch tensor operations (``affine_grid``/``grid_sample``) because
torchvision's transforms need a torchvision built for the installed torch, which the CPU wheel
does not have.

>>> summary = train("faces_by_class/", "google/vit-base-patch16-224-in21k", "my-model/")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from fer_stream.commands.augment import LEVELS, augment, mix
from fer_stream.commands.evaluate import load_dataset
from fer_stream.commands.options import model_flags
from fer_stream.commands.training_parts import Cached, Loader, amp_dtype, calibrate, logits_of, save_model, tie_colour_channels
from fer_stream.config import Config
from fer_stream.errors import ConfigError, ModelError, SourceError, counted, first_line, printable
from fer_stream.io.sinks import writable_path
from fer_stream.model.devices import resolve_device
from fer_stream.model.hub import _quiet_transformers, load_model, model_folder
from fer_stream.model.preprocess import TensorPreprocessor

R = TypeVar("R")


@dataclass(frozen=True)
class Recipe:
    """Training settings (``fer-stream train --help`` names each: a flag per field, its dest the field's name)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    accumulate: int = 1
    val_fraction: float = 0.15
    clip: float = 1.0
    restart_epochs: int = 5  # the cosine schedule restarts every this many epochs
    seed: int = 0
    augment: str = "video"  # none | basic | video (fer_stream.commands.augment)
    erase: float = 0.25  # share of images with one rectangle erased (an occlusion)
    mixup: float = 0.0  # Beta(a, a) of mixup; 0 = off
    cutmix: float = 0.0  # Beta(a, a) of cutmix; 0 = off
    mix_prob: float = 0.5  # share of batches mixed when mixup or cutmix is on
    warmup_epochs: float = 0.0  # the learning rate rises linearly over this many epochs first
    amp: str = "auto"  # mixed precision: auto (fp16 on accelerators, fp32 on CPU) | fp32 | bf16
    class_weights: str = "inverse"  # inverse | sqrt | none: how rare classes are weighted in the loss
    target_accuracy: float = 0.85  # the model's threshold: unflagged answers this often right on the validation split
    teacher: str | None = None  # a trained model whose answers the new one learns from (distillation)
    distill_weight: float = 0.7  # share of the loss from the teacher's answers
    distill_temperature: float = 2.0  # both models' logits divided by this before they are compared


def parser() -> argparse.ArgumentParser:
    from fer_stream.commands.finetune import SiteRecipe  # imports this module: not at the top

    d, site = Recipe(), SiteRecipe()
    p = argparse.ArgumentParser(
        prog="fer-stream train",
        description="Fine-tune a Hugging Face image classifier on a folder-per-class data set; the best epoch is saved "
        "with save_pretrained, labels from the folder names. With --from-review: fine-tune --model on the faces "
        "people labelled in review stores, mixed with a replay of its training data.",
    )
    p.add_argument("data", metavar="DIR", nargs="?", help="one subfolder of face crops per class (not with --from-review)")
    p.add_argument("--out", required=True, metavar="FOLDER", help="where the best model goes (FOLDER/last: latest epoch)")
    site_args = p.add_argument_group("learning a site from reviewed faces")
    site_args.add_argument(
        "--from-review",
        nargs="+",
        metavar="DIR",
        help="fine-tune --model on the faces labelled in these review stores (fer-stream review); FOLDER must be new",
    )
    site_args.add_argument(
        "--replay",
        metavar="DIR",
        help="the base model's training data, replayed so it does not forget (default: what its training.json names)",
    )
    site_args.add_argument(
        "--replay-ratio", type=float, default=site.replay_ratio, help="replayed images per reviewed face each epoch (default 1)"
    )
    site_args.add_argument(
        "--review-holdout", type=float, default=site.review_holdout, help="share of the reviewed faces held out to measure it (default 0.2)"
    )
    p.add_argument("--epochs", type=int, help=f"(default {d.epochs}; {site.epochs} with --from-review)")
    p.add_argument("--batch-size", type=int, help=f"(default {d.batch_size}; {site.batch_size} with --from-review)")
    p.add_argument("--lr", type=float, help=f"AdamW learning rate (default {d.lr:g}; {site.lr:g} with --from-review)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"(default {d.weight_decay:g})")
    p.add_argument("--label-smoothing", type=float, help=f"(default {d.label_smoothing:g}; {site.label_smoothing:g} with --from-review)")
    p.add_argument("--accumulate", type=int, default=d.accumulate, help="batches per optimizer step (default 1)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help=f"held out per class (default {d.val_fraction:g})")
    p.add_argument("--clip", type=float, default=d.clip, help=f"gradient norm clip (default {d.clip:g})")
    p.add_argument("--restart-epochs", type=int, default=d.restart_epochs, help=f"cosine warm-restart period (default {d.restart_epochs})")
    p.add_argument("--seed", type=int, default=d.seed, help="(default 0)")
    p.add_argument(
        "--augment",
        choices=LEVELS,
        default=d.augment,
        help="basic: flips, colour jitter, small affine changes; video: also colour casts, side light, blur, down-scaling, JPEG "
        "and noise, so that web crops look like video frames (default video)",
    )
    p.add_argument("--no-augment", dest="augment", action="store_const", const="none", help="no augmentation (same as --augment none)")
    p.add_argument("--erase", type=float, default=d.erase, metavar="P", help=f"share of images partly erased (default {d.erase:g})")
    p.add_argument("--mixup", type=float, default=d.mixup, metavar="ALPHA", help="mixup's Beta(ALPHA, ALPHA); 0 = off (default 0)")
    p.add_argument("--cutmix", type=float, default=d.cutmix, metavar="ALPHA", help="cutmix's Beta(ALPHA, ALPHA); 0 = off (default 0)")
    p.add_argument("--mix-prob", type=float, default=d.mix_prob, metavar="P", help=f"share of batches mixed (default {d.mix_prob:g})")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear learning-rate warm-up first (default 0)")
    p.add_argument(
        "--amp",
        choices=("auto", "fp32", "bf16"),
        default=d.amp,
        help="auto: fp16 on cuda/npu/mps, fp32 on CPU; bf16: bfloat16 autocast (fast on CPUs with AVX-512 BF16 or AMX) (default auto)",
    )
    p.add_argument(
        "--target-accuracy",
        type=float,
        default=d.target_accuracy,
        help="the saved model's threshold: the lowest at which unflagged validation answers are this often right (default 0.85)",
    )
    p.add_argument(
        "--teacher",
        metavar="MODEL",
        help="distil: also learn the answers of this trained model (folder or hub id, the same labels) on the same augmented images",
    )
    p.add_argument(
        "--distill-weight", type=float, default=d.distill_weight, help=f"share of the loss from the teacher (default {d.distill_weight:g})"
    )
    p.add_argument(
        "--distill-temperature",
        type=float,
        default=d.distill_temperature,
        help=f"softening of both models' answers before they are compared (default {d.distill_temperature:g})",
    )
    p.add_argument(
        "--exclude",
        metavar="LIST.txt",
        help="images never trained on nor used to pick the epoch (CLASS/FILE paths relative to DIR): a test set for `eval --only`",
    )
    p.add_argument(
        "--cache-mb",
        type=int,
        default=2048,
        metavar="MB",
        help="decode the images once into memory when they take at most this much at the model's input size (default 2048; 0 = never)",
    )
    p.add_argument(
        "--class-weights",
        choices=("inverse", "sqrt", "none"),
        default=d.class_weights,
        help="loss weight of each class: inverse of its count, its square root, or equal (default inverse)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes decoding images ahead of the model (default: cores - 1, at most 4; 0 = none)",
    )
    p.add_argument("--resume", action="store_true", help="continue from FOLDER/last")
    p.add_argument("--json", action="store_true", help="print the run's figures as JSON")
    p.add_argument("-q", "--quiet", dest="progress", action="store_false", default=None, help="no progress bar")
    model_flags(p)
    return p


def from_flags(kind: type[R], args: argparse.Namespace) -> R:
    """A recipe of ``kind`` with its defaults, overridden by the flags the user gave (those not None)."""
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    return kind(**{k: v for k, v in given.items() if v is not None})


def handle(cfg: Config, args: argparse.Namespace) -> int:
    if args.from_review:
        return run_fine_tune(cfg, args)
    if args.data is None:
        raise ConfigError("fer-stream train needs DIR (one subfolder of face crops per class) or --from-review DIR")
    recipe = from_flags(Recipe, args)
    return run_train(
        cfg,
        args.data,
        base=cfg.classifier.model,
        out=args.out,
        recipe=recipe,
        resume=args.resume,
        as_json=args.json,
        workers=args.workers,
        exclude=args.exclude,
        cache_mb=args.cache_mb,
        progress=args.progress,
    )


def split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices for training and validation, stratified: each class gives ``fraction`` of its items (at least one)."""
    rng = random.Random(seed)
    train_idx, val_idx = [], []
    for c in sorted(set(labels)):
        items = [i for i, y in enumerate(labels) if y == c]
        rng.shuffle(items)
        k = min(len(items) - 1, max(1, round(len(items) * fraction))) if fraction > 0 else 0
        val_idx += items[:k]
        train_idx += items[k:]
    return sorted(train_idx), sorted(val_idx)


def class_weights(counts: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss weight per class from its training count: ``inverse`` (balanced), ``sqrt`` (half-way) or ``none``.

    Scaled so that the mean weight over the training images is 1.
    """
    w = (1 / counts.clamp(min=1)) ** {"inverse": 1.0, "sqrt": 0.5, "none": 0.0}[kind]
    return w * counts.sum() / (w * counts).sum()


def load_base(base: str, labels: list[str]) -> tuple[Any, torch.nn.Module]:
    """The base model's processor and the model with a head for ``labels`` (a new one if they differ)."""
    from transformers import AutoModelForImageClassification  # seconds to import: only when training

    processor, net = load_model(base)  # checks the folder or hub id and finds it offline when cached
    id2label = dict(enumerate(labels))
    if [net.config.id2label.get(i) for i in range(len(labels))] == labels and net.config.num_labels == len(labels):
        return processor, net
    net = AutoModelForImageClassification.from_pretrained(
        str(model_folder(base)),
        num_labels=len(labels),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        ignore_mismatched_sizes=True,
        use_safetensors=True,
        trust_remote_code=False,
        local_files_only=True,
    )
    return processor, net


def train(
    data: str | Path,
    base: str,
    out: str | Path,
    recipe: Recipe = Recipe(),
    *,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    workers: int | None = None,
    exclude: str | Path | None = None,
    cache_mb: int = 2048,
) -> dict[str, Any]:
    """Fine-tune ``base`` on ``data``; writes the best model to ``out`` and returns the run's figures."""
    _quiet_transformers()
    if workers is None:
        workers = min(4, max(1, (os.cpu_count() or 1) - 1))
    files, folders = load_dataset(data)
    excluded = _excluded(data, exclude)
    if excluded:
        kept = [i for i, f in enumerate(files) if f.resolve() not in excluded]
        files, folders = [files[i] for i in kept], [folders[i] for i in kept]
    labels = sorted(set(folders))
    if len(labels) < 2:
        raise SourceError(f"'{data}' has one class folder; training needs at least two")
    y = [labels.index(f) for f in folders]
    out = Path(out)
    last = out / "last"
    _recover(last)
    if resume and not last.is_dir():
        raise ModelError(f"nothing to resume in '{out}' (no {last}); run without --resume first")
    state = _load_state(last / "training_state.pt") if resume else {}
    if resume:
        _check_resumed_labels(last, state.get("labels"), labels, data)
    dev = resolve_device(device)
    torch.manual_seed(recipe.seed)
    processor, net = load_base(str(last) if resume else base, labels)
    pre = TensorPreprocessor.from_processor(processor)
    if pre is None:
        raise ModelError(
            f"'{base}' uses an image processor that crops; fer-stream train supports resize-and-normalize processors (ViT-style)"
        )
    # Images stay on disk unless they fit in --cache-mb at the model's input size: workers decode
    # and resize each batch to 0-255 floats; augmentation and normalization run on the batch here.
    raw = TensorPreprocessor(*pre.size, pre.mode, 1.0, torch.zeros(3), torch.ones(3))
    disk = Loader(files, y, raw, workers)
    fits = len(files) * 3 * pre.size[0] * pre.size[1] <= cache_mb * 2**20
    loader: Loader | Cached = Cached.decode(disk, len(files), progress) if fits else disk
    train_idx, val_idx = split(y, recipe.val_fraction, recipe.seed)
    targets = torch.tensor(y)
    counts = torch.bincount(targets[train_idx], minlength=len(labels)).float()
    weights = class_weights(counts, recipe.class_weights).to(dev)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=recipe.label_smoothing)
    net = net.to(dev).train()
    if dev.type == "cpu":
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # oneDNN's fast layout for convolutions
    tie_colour_channels(net)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_idx) / (recipe.batch_size * recipe.accumulate)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(recipe, steps_per_epoch))
    amp = amp_dtype(recipe.amp, dev)
    scaler = torch.amp.GradScaler(dev.type) if amp is torch.float16 and dev.type == "cuda" else None
    teacher = _Teacher.load(recipe.teacher, labels, pre.size, dev) if recipe.teacher else None
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"val_accuracy": float("-inf"), "val_loss": float("inf"), "epoch": 0}
    start_epoch = 0
    if resume:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, best, history = state["epoch"], state["best"], state["history"]
    gen = torch.Generator().manual_seed(recipe.seed + start_epoch)
    norm = lambda x: x.mul(pre._mul).sub(pre._sub).contiguous(memory_format=torch.channels_last)
    bar = tqdm(
        range(start_epoch, recipe.epochs), desc="train", unit="epoch", disable=not progress, initial=start_epoch, total=recipe.epochs
    )
    for epoch in bar:
        net.train()
        order = torch.tensor(train_idx)[torch.randperm(len(train_idx), generator=gen)]
        total, seen = 0.0, 0
        opt.zero_grad(set_to_none=True)
        batches = [order[i : i + recipe.batch_size].tolist() for i in range(0, len(order), recipe.batch_size)]
        steps = tqdm(loader(batches), total=len(batches), desc=f"epoch {epoch + 1}", unit="batch", leave=False, disable=not progress)
        for k, (images, t) in enumerate(steps):
            m = mix(augment(images, gen, recipe.augment, recipe.erase), t, gen, mixup=recipe.mixup, cutmix=recipe.cutmix, p=recipe.mix_prob)
            x = norm(m.x).to(dev)
            a, b = m.a.to(dev), m.b.to(dev)
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                logits = net(pixel_values=x).logits.float()
            loss = loss_fn(logits, a) if m.lam == 1.0 else m.lam * loss_fn(logits, a) + (1 - m.lam) * loss_fn(logits, b)
            if teacher is not None:
                soft = teacher.loss(logits, m.x, recipe.distill_temperature, amp)
                loss = (1 - recipe.distill_weight) * loss + recipe.distill_weight * soft
            (scaler.scale(loss / recipe.accumulate) if scaler else loss / recipe.accumulate).backward()
            total += float(loss.detach()) * len(a)
            seen += len(a)
            if (k + 1) % recipe.accumulate == 0 or k + 1 == len(batches):
                if scaler:
                    scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(net.parameters(), recipe.clip)
                if scaler:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
        val = evaluate_split(net, loader, val_idx, norm, loss_fn, dev, amp) if val_idx else {"val_loss": None, "val_accuracy": None}
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": round(total / max(seen, 1), 5), **val, "lr": opt.param_groups[0]["lr"]}
        history.append(row)
        score = (val["val_accuracy"] if val_idx else -row["train_loss"], -(val["val_loss"] or row["train_loss"]))
        if score > (best["val_accuracy"], -best["val_loss"]):
            best = {"val_accuracy": score[0], "val_loss": -score[1], "epoch": epoch + 1}
            _save_best(net, processor, out)
        _checkpoint(
            net,
            processor,
            last,
            {
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch + 1,
                "best": best,
                "history": history,
                "recipe": asdict(recipe),
                "labels": labels,
            },
        )
        bar.set_postfix(loss=row["train_loss"], val_acc=val["val_accuracy"], refresh=False)
    bar.close()
    # The held-out images, for `fer-stream eval DATA --only OUT/heldout.txt` on exactly what training never saw.
    base_dir = Path(data)
    (out / "heldout.txt").write_text("".join(f"{files[i].relative_to(base_dir).as_posix()}\n" for i in val_idx), encoding="utf-8")
    if exclude is not None:
        shutil.copyfile(exclude, out / "test.txt")
    calibration = calibrate(out, loader, val_idx, norm, dev, recipe.target_accuracy) if val_idx else None
    summary = {
        "data": str(data),
        "base": base,
        "out": str(out),
        "labels": labels,
        "train_images": len(train_idx),
        "val_images": len(val_idx),
        "excluded_images": len(excluded),
        "best_epoch": best["epoch"],
        "best_val_accuracy": best["val_accuracy"] if val_idx else None,  # without a split: lowest training loss
        "calibration": calibration,
        "history": history,
        "recipe": asdict(recipe),
        "device": str(dev),
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


class _Teacher:
    """A trained model in eval mode whose softened answers the student learns (Hinton et al. 2015).

    It sees the same augmented (and mixed) 0-255 batch, resized to its own input size and
    normalized its own way; its outputs are put in the student's label order by name.
    """

    def __init__(self, net: torch.nn.Module, pre: TensorPreprocessor, order: torch.Tensor, size: tuple[int, int]) -> None:
        self.net, self.pre, self.order, self.size = net, pre, order, size

    @classmethod
    def load(cls, model: str, labels: list[str], size: tuple[int, int], dev: torch.device) -> _Teacher:
        processor, net = load_model(model)
        pre = TensorPreprocessor.from_processor(processor)
        if pre is None:
            raise ModelError(f"teacher '{model}' uses an image processor that crops; use a resize-and-normalize (ViT-style) model")
        names = [str(net.config.id2label[i]) for i in range(int(net.config.num_labels))]
        if sorted(names) != sorted(labels):
            raise ModelError(
                f"teacher '{model}' has the labels {', '.join(names)}, the data set {', '.join(labels)}; "
                "distil from a model of the same classes"
            )
        order = torch.tensor([names.index(label) for label in labels], device=dev)
        for p in net.parameters():
            p.requires_grad_(False)
        return cls(net.to(dev).eval(), pre, order, size)

    def loss(self, student: torch.Tensor, images: torch.Tensor, temperature: float, amp: Any) -> torch.Tensor:
        """KL divergence of the student's softened answers from the teacher's, scaled by T^2."""
        x = images
        if tuple(self.pre.size) != tuple(self.size):
            x = torch.nn.functional.interpolate(x, size=self.pre.size, mode="bilinear", antialias=True, align_corners=False)
        x = x.mul(self.pre._mul).sub(self.pre._sub).to(student.device)
        with torch.no_grad(), torch.autocast(student.device.type, dtype=amp, enabled=amp is not None):
            target = self.net(pixel_values=x).logits.float()[:, self.order]
        log_p = torch.log_softmax(student / temperature, dim=1)
        q = torch.softmax(target / temperature, dim=1)
        return torch.nn.functional.kl_div(log_p, q, reduction="batchmean") * temperature**2


def _excluded(data: str | Path, exclude: str | Path | None) -> set[Path]:
    """The resolved paths that ``--exclude`` lists (checked like ``eval --only``'s list)."""
    if exclude is None:
        return set()
    files, _ = load_dataset(data, exclude)
    return {f.resolve() for f in files}


def _schedule(recipe: Recipe, steps_per_epoch: int) -> Any:
    """The learning rate's factor at each optimizer step: a linear warm-up over ``warmup_epochs``,
    then cosine cycles of ``restart_epochs`` (warm restarts)."""
    warm = round(recipe.warmup_epochs * steps_per_epoch)
    period = max(1, recipe.restart_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * ((step - warm) % period) / period))

    return factor


def _load_state(path: Path) -> dict[str, Any]:
    """The optimizer/scheduler checkpoint, loaded without unpickling code (``weights_only``)."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = first_line(e)
        raise ModelError(
            f"cannot resume from '{path}': not a plain training checkpoint ({first[:160]}); delete it or train again without --resume"
        ) from None


def evaluate_split(
    net: torch.nn.Module, loader: Loader | Cached, idx: list[int], norm: Any, loss_fn: Any, dev: torch.device, amp: Any = None
) -> dict[str, float]:
    logits = logits_of(net, loader, idx, norm, dev, amp)
    t = torch.cat([t for _, t in loader([idx])])
    return {
        "val_loss": round(float(loss_fn(logits.to(dev), t.to(dev))), 5),
        "val_accuracy": round(float((logits.argmax(1) == t).float().mean()), 4),
    }


def _checkpoint(net: torch.nn.Module, processor: Any, last: Path, state: dict[str, Any]) -> None:
    """Model and optimizer state of one epoch, together or not at all: both are written to
    ``last.new`` first, which then replaces ``last`` (a crash leaves one whole checkpoint)."""
    new, old = last.with_name(last.name + ".new"), last.with_name(last.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    save_model(net, processor, new)
    torch.save(state, new / "training_state.pt")
    if last.exists():
        last.rename(old)
    new.rename(last)
    shutil.rmtree(old, ignore_errors=True)


def _recover(last: Path) -> None:
    """After a crash between the two renames of :func:`_checkpoint`, the previous checkpoint is
    ``last.old``; a best model that was being written (:func:`_save_best`) is dropped."""
    old = last.with_name(last.name + ".old")
    if not last.exists() and old.is_dir():
        old.rename(last)
    shutil.rmtree(last.parent / BEST_NEW, ignore_errors=True)


BEST_NEW = ".best.new"  # where the best model is written before its files replace the previous best's


def _save_best(net: Any, processor: Any, out: Path) -> None:
    """The best model into ``out``, as atomically as a folder that also holds ``last/`` allows: it is
    written whole into ``out/.best.new``, then each file is renamed over the previous best's, the
    weights last. A crash leaves whole files, the previous best's or the new one's (their settings
    are the same within a run), never a half-written model."""
    new = out / BEST_NEW
    shutil.rmtree(new, ignore_errors=True)
    save_model(net, processor, new)
    weights = lambda p: (p.name.endswith(".safetensors"), p.name.endswith(".index.json"))
    for f in sorted(new.iterdir(), key=weights):  # settings, then weights, then the shard index
        os.replace(f, out / f.name)
    new.rmdir()


def _check_resumed_labels(last: Path, saved: Any, labels: list[str], data: str | Path) -> None:
    """``--resume`` continues the same classes: a checkpoint of other classes is one clear line."""
    if saved == labels:
        return
    saved = [str(s) for s in saved] if isinstance(saved, list) else []
    missing = [s for s in saved if s not in labels]
    extra = [s for s in labels if s not in saved]
    parts = [f"missing: {', '.join(missing)}" if missing else "", f"new: {', '.join(extra)}" if extra else ""]
    differ = "; ".join(p for p in parts if p)
    raise ModelError(
        f"cannot resume from '{last}': it was trained on {len(saved)} classes, '{data}' has {len(labels)} "
        f"({differ or 'in another order'}); resume with the same class folders, or train into a new --out"
    )


def run_train(
    cfg: Config,
    data: str,
    *,
    base: str,
    out: str,
    recipe: Recipe,
    resume: bool,
    as_json: bool,
    workers: int | None = None,
    exclude: str | None = None,
    cache_mb: int = 2048,
    progress: bool | None = None,
) -> int:
    """The ``train`` command."""
    if min(recipe.epochs, recipe.batch_size, recipe.accumulate, recipe.restart_epochs) < 1 or not 0 <= recipe.val_fraction < 1:
        raise ConfigError("--epochs, --batch-size, --accumulate and --restart-epochs must be at least 1, --val-fraction in [0, 1)")
    if workers is not None and workers < 0:
        raise ConfigError("--workers must be 0 or more")
    if not (0 <= recipe.erase <= 1 and 0 <= recipe.mix_prob <= 1 and 0 < recipe.target_accuracy < 1):
        raise ConfigError("--erase and --mix-prob must be in [0, 1], --target-accuracy in (0, 1)")
    if min(recipe.mixup, recipe.cutmix, recipe.warmup_epochs) < 0 or cache_mb < 0:
        raise ConfigError("--mixup, --cutmix, --warmup-epochs and --cache-mb must be 0 or more")
    if not (0 <= recipe.distill_weight <= 1 and recipe.distill_temperature > 0):
        raise ConfigError("--distill-weight must be in [0, 1], --distill-temperature above 0")
    writable_path(Path(out) / "training.json") if Path(out).is_dir() else writable_path(out)
    summary = train(
        data,
        base,
        out,
        recipe,
        device=cfg.classifier.device,
        resume=resume,
        progress=cfg.output.progress if progress is None else progress,  # -q here, or the config's
        workers=workers,
        exclude=exclude,
        cache_mb=cache_mb,
    )
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        h = summary["history"]
        best = (
            f"best validation accuracy {summary['best_val_accuracy']:.1%}"
            if summary["best_val_accuracy"] is not None
            else "lowest training loss"
        )
        print(
            f"trained {counted(len(h), 'epoch')} on {counted(summary['train_images'], 'image')} ({summary['val_images']} held out) on "
            f"{summary['device']}: train loss {h[0]['train_loss']:.4f} -> {h[-1]['train_loss']:.4f}; {best} at epoch "
            f"{summary['best_epoch']}"
        )
        print(
            printable(
                f"saved the best model to {summary['out']} (labels {', '.join(summary['labels'])}); try "
                f"`fer-stream eval DATA --model {summary['out']}`"
            )
        )
    return 0


def run_fine_tune(cfg: Config, args: argparse.Namespace) -> int:
    """``train --from-review``: fine-tune ``--model`` on reviewed faces; prints before and after."""
    from fer_stream.commands.finetune import SiteRecipe, check_out, fine_tune

    if args.data is not None:
        raise ConfigError("give either DIR or --from-review, not both (the base's training data is --replay DIR)")
    if args.resume or args.teacher or args.exclude:
        raise ConfigError("--resume, --teacher and --exclude do not apply to --from-review")
    recipe = from_flags(SiteRecipe, args)
    if min(recipe.epochs, recipe.batch_size) < 1 or not 0 < recipe.review_holdout < 1 or recipe.replay_ratio < 0:
        raise ConfigError("--epochs and --batch-size must be at least 1, --review-holdout in (0, 1), --replay-ratio 0 or more")
    check_out(args.out, cfg.classifier.model)
    s = fine_tune(
        args.from_review,
        cfg.classifier.model,
        args.out,
        recipe,
        replay=args.replay,
        device=cfg.classifier.device,
        progress=cfg.output.progress if args.progress is None else args.progress,
        workers=0 if args.workers is None else args.workers,
    )
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    b, a = s["before"], s["after"]
    line = f"held-out reviewed faces ({s['held_out']}): {b['review_heldout']:.1%} -> {a['review_heldout']:.1%}"
    for key in ("test", "validation"):
        if b.get(key) is not None:
            line += f"; base's {key} split: {b[key]:.1%} -> {a[key]:.1%}"
    print(
        f"fine-tuned on {counted(s['trained_on'], 'reviewed face')} and {s['replay']['per_epoch']} replayed images per epoch, "
        f"{counted(s['recipe']['epochs'], 'epoch')} in {s['seconds']:.0f} s ({s['not_a_face']} marked not a face, "
        f"{s['skipped']} skipped: left out)"
    )
    print(line)
    print(printable(f"saved {s['out']} with its model card (README.md); try `fer-stream eval --from-review DIR --model {s['out']}`"))
    return 0
