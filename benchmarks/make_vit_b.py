"""Build a full-size ViT-B/16 expression classifier for benchmarks, offline.

The published model (trpakov/vit-face-expression, a ViT-B/16) cannot be downloaded here, so the
benchmarks use a model of the same architecture and size: timing depends on the architecture, not
on the weights. With ``--probe-on DIR`` (a folder per class, e.g. ../shared/expressions) the
classification head is fitted to the (random) backbone's features of those faces (a linear probe),
so that predictions depend on the face and are confident, as a trained model's are; that makes the
int8-versus-fp32 agreement figures meaningful rather than ties between near-uniform outputs.

    python benchmarks/make_vit_b.py --out /tmp/vit-b --probe-on ../shared/expressions
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def build_vit_b(folder: Path, probe_on: Path | None = None, steps: int = 500) -> Path:
    import transformers
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(num_labels=7, id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    torch.manual_seed(0)
    model = ViTForImageClassification(cfg).eval()
    processor = (getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor)(size={"height": 224, "width": 224})
    if probe_on is not None:
        from fer_stream.io.images import list_images, read_image
        from fer_stream.model.preprocess import TensorPreprocessor

        pre = TensorPreprocessor.from_processor(processor)
        xs, ys = [], []
        for i, label in enumerate(LABELS):
            for p in list_images(probe_on / label):
                xs.append(read_image(p))
                ys.append(i)
        feats = []
        with torch.inference_mode():
            for i in range(0, len(xs), 16):
                feats.append(model.vit(pixel_values=pre(xs[i : i + 16])).last_hidden_state[:, 0])
        f = torch.cat(feats).clone()
        y = torch.tensor(ys)
        head = model.classifier
        opt = torch.optim.Adam(head.parameters(), lr=1e-2)
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(head(f), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            probs = head(f).softmax(-1)
        print(
            f"linear probe on {len(y)} faces: train accuracy {(probs.argmax(1) == y).float().mean():.1%}, "
            f"mean top-1 probability {probs.max(1).values.mean():.2f}"
        )
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--probe-on", type=Path, help="folder-per-class face images to fit the head on")
    args = ap.parse_args()
    build_vit_b(args.out, args.probe_on)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
