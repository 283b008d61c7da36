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
from transformers import (
    PvtV2Config,
    PvtV2ForImageClassification,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def build(out: str, size: int = 80, seed: int = 0, width: int = 32, arch: str = "resnet") -> None:
    torch.manual_seed(seed)
    if arch == "vit":
        return build_vit(out, size, width)
    if arch == "pvt":
        return build_pvt(out, size, width)
    cfg = ResNetConfig(num_channels=3, embedding_size=width, hidden_sizes=[width, 2 * width, 4 * width, 8 * width], depths=[2, 2, 2, 2],
                       layer_type="basic", num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                       label2id={l: i for i, l in enumerate(LABELS)})
    net = ResNetForImageClassification(cfg)
    save(net, net.resnet.embedder.embedder.convolution, out, size)


def build_vit(out: str, size: int, width: int) -> None:
    """A small ViT (patches of 8 px, ``width`` channels per token, 6 layers, width // 64 heads)."""
    cfg = ViTConfig(image_size=size, patch_size=8, num_channels=3, hidden_size=width, num_hidden_layers=6,
                    num_attention_heads=max(1, width // 64), intermediate_size=4 * width, num_labels=len(LABELS),
                    id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    net = ViTForImageClassification(cfg)
    save(net, net.vit.embeddings.patch_embeddings.projection, out, size)


def build_pvt(out: str, size: int, width: int) -> None:
    """A hybrid vision transformer (PVTv2, b0's layout): overlapping convolutional patch embeddings and
    a depth-wise convolution in each feed-forward block give attention the locality a plain ViT must
    learn from data; channels ``width``, 2x, 5x, 8x over four stages (b0: ``width`` 32, 3.4 M parameters)."""
    cfg = PvtV2Config(num_channels=3, hidden_sizes=[width, 2 * width, 5 * width, 8 * width], depths=[2, 2, 2, 2],
                      num_attention_heads=[1, 2, 5, 8], sr_ratios=[8, 4, 2, 1], patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
                      num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    net = PvtV2ForImageClassification(cfg)
    save(net, net.pvt_v2.encoder.layers[0].patch_embedding.proj, out, size)


def save(net: torch.nn.Module, conv: torch.nn.Conv2d, out: str, size: int) -> None:
    """Tie the first convolution's R, G and B weights, then save the network and its processor."""
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
    ap.add_argument("--width", type=int, default=32,
                    help="ResNet: channels of the first stage (doubled at each of the next three); ViT: channels per token; "
                         "PVT: channels of the first stage")
    ap.add_argument("--arch", choices=("resnet", "vit", "pvt"), default="resnet")
    a = ap.parse_args()
    build(a.out, a.size, a.seed, a.width, a.arch)
