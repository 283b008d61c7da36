"""Build the untrained starting point of ``samples/models/fer2013-small``: a half-width ResNet-18.

``fer-stream train`` fine-tunes an existing Hugging Face model, so a from-scratch model starts as a
randomly initialised one saved with ``save_pretrained``. This writes a ResNet (transformers'
``ResNetConfig``: basic blocks, depths 2-2-2-2, widths 32-64-128-256, 2.8 M parameters) with a
ViT-style image processor (resize to 80x80, scale to [-1, 1]) so fer-stream's tensor preprocessing
applies. FER2013 crops are 48x48 grey, upsampled to 80 px so that the ResNet stem (stride 4) leaves
a 20x20 map.

The first convolution gets the same weights for R, G and B. Trained on grey images (R = G = B),
each channel receives the same gradient, so the weights stay equal and the trained model responds
only to R + G + B: a colour camera's face gives the same answer as its grey version, which is the
only kind of face it was trained on.

    python samples/models/make_base.py --out /tmp/fer2013-base
"""

from __future__ import annotations

import argparse

import torch
from transformers import ResNetConfig, ResNetForImageClassification, ViTImageProcessor

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def build(out: str, size: int = 80, seed: int = 0, width: int = 32) -> None:
    torch.manual_seed(seed)
    cfg = ResNetConfig(num_channels=3, embedding_size=width, hidden_sizes=[width, 2 * width, 4 * width, 8 * width], depths=[2, 2, 2, 2],
                       layer_type="basic", num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                       label2id={l: i for i, l in enumerate(LABELS)})
    net = ResNetForImageClassification(cfg)
    conv = net.resnet.embedder.embedder.convolution
    with torch.no_grad():
        conv.weight.copy_(conv.weight.mean(dim=1, keepdim=True).expand_as(conv.weight))
    net.save_pretrained(out, safe_serialization=True)
    ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                      resample=2).save_pretrained(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=32, help="channels of the first stage (doubled at each of the next three)")
    a = ap.parse_args()
    build(a.out, a.size, a.seed, a.width)
