"""Choosing the compute device: Ascend NPU, CUDA, Apple MPS or CPU.

>>> resolve_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fer_stream.errors import DeviceError, first_line

if TYPE_CHECKING:  # torch is imported when a device is resolved, not when this module is
    import torch

_CHOICES = "auto, npu, cuda, mps or cpu"


@dataclass(frozen=True)
class HostDevice:
    """The CPU, named without torch (``.type`` and ``str()`` as a ``torch.device`` has them): the
    ONNX Runtime path runs on it without importing torch."""

    type: str = "cpu"

    def __str__(self) -> str:
        return self.type


def accelerator_present() -> bool:
    """Whether this machine may have a GPU or NPU for torch: an NVIDIA or Ascend device node, or an
    Apple-silicon Mac. Cheap (no torch import): ``auto`` devices need torch only when this is true."""
    nodes = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/davinci0", "/dev/davinci_manager", "/dev/kfd")
    return any(Path(p).exists() for p in nodes) or (sys.platform == "darwin" and platform.machine() == "arm64")


def npu_available() -> bool:
    """True when torch_npu imports and sees at least one Ascend NPU."""
    if importlib.util.find_spec("torch_npu") is None:
        return False
    try:
        import torch
        import torch_npu  # noqa: F401  (registers torch.npu)

        return bool(torch.npu.is_available())  # type: ignore[attr-defined]
    except Exception:
        return False


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """The ``torch.device`` for ``name``; ``auto`` picks npu, then cuda, then mps, then cpu.

    A device that is asked for by name but is not there raises :class:`DeviceError` saying what to
    install or why it is missing.
    """
    import torch

    kind, _, index = name.strip().lower().partition(":")
    if kind == "auto" and not index:
        if npu_available():
            return torch.device("npu", 0)
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind not in ("npu", "cuda", "mps", "cpu") or (index and not (index.isascii() and index.isdigit())):
        raise DeviceError(f"unknown device '{name}'; choose {_CHOICES} (cuda:N and npu:N pick a card)")
    if index and kind in ("mps", "cpu"):
        raise DeviceError(f"device '{name}' takes no index; use '{kind}'")
    n = int(index) if index else 0

    if kind == "cpu":
        return torch.device("cpu")
    if kind == "npu":
        if importlib.util.find_spec("torch_npu") is None:
            raise DeviceError(
                "device 'npu' needs torch_npu: install it with `pip install 'fer-stream[npu]'` on a machine with the Ascend CANN toolkit"
            )
        try:
            import torch_npu  # noqa: F401
        except Exception as e:
            first = first_line(e)
            raise DeviceError(f"torch_npu is installed but failed to import ({first}); source the CANN set_env.sh") from None
        count = torch.npu.device_count()  # type: ignore[attr-defined]
        if count == 0:
            raise DeviceError("device 'npu': torch_npu sees no Ascend NPU; check the driver with npu-smi info")
        if n >= count:
            raise DeviceError(f"device '{name}': only {count} NPU(s) visible (npu:0 to npu:{count - 1})")
        return torch.device("npu", n)
    if kind == "cuda":
        if torch.version.cuda is None:
            raise DeviceError(
                f"device 'cuda': this torch {torch.__version__} is a build without CUDA; "
                "install a CUDA build of torch (see pytorch.org) or use --device cpu"
            )
        count = torch.cuda.device_count()
        if count == 0:
            raise DeviceError("device 'cuda': no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
        if n >= count:
            raise DeviceError(f"device '{name}': only {count} GPU(s) visible (cuda:0 to cuda:{count - 1})")
        return torch.device("cuda", n)
    # mps
    if not _mps_available():
        raise DeviceError("device 'mps' is only available on Apple-silicon Macs with macOS 12.3 or newer")
    return torch.device("mps")
