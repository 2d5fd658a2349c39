"""Teachers: the big networks whose outputs the student learns to reproduce.

A teacher is any callable ``(N, 3, H, W) float RGB in [0, 1] -> same shape`` with a ``name``
that identifies its weights (cache keys use it). Three kinds, chosen by ``make_teacher``:

- ``restormer:PATH``: our own Restormer, loading the official ``motion_deblurring.pth``;
- ``onnx:PATH``: any image-to-image ONNX model, run by onnxruntime;
- ``none``: no teacher (train on ground truth only).

``tiled_forward`` runs any of them over frames that do not fit in memory, and ``TeacherCache``
keeps their outputs on disk so a 2.2-TMAC teacher runs once per crop, not once per epoch.

Each lives in its own module: ``train.restormer`` (the network, its checkpoint, the teacher),
``train.tiling``, ``train.onnx_teacher``, ``train.teacher_cache``; ``train.teacher_base`` holds
what they share. Import from here: every name is re-exported.
"""

from __future__ import annotations

import torch

from train.onnx_teacher import SPEC_KEY, OnnxTeacher, TeacherSpec
from train.restormer import Restormer, RestormerTeacher, load_restormer
from train.teacher_base import Teacher, TeacherError
from train.teacher_cache import TeacherCache, teacher_targets
from train.tiling import tiled_forward


def make_teacher(spec: str, device: str | torch.device = "cpu") -> Teacher | None:
    """A teacher from its command-line spec.

    ``"none"`` -> None; ``"restormer:PATH"`` or a PATH ending in .pth/.pt -> ``RestormerTeacher``;
    ``"onnx:PATH"`` or a PATH ending in .onnx -> ``OnnxTeacher`` (default ``TeacherSpec``).

    >>> make_teacher("none") is None
    True
    """
    kind, sep, rest = spec.partition(":")
    if spec == "none":
        return None
    if sep and kind == "restormer":
        return RestormerTeacher.from_checkpoint(rest, device)
    if sep and kind == "onnx":
        return OnnxTeacher(rest, device=device)
    if spec.endswith((".pth", ".pt")):
        return RestormerTeacher.from_checkpoint(spec, device)
    if spec.endswith(".onnx"):
        return OnnxTeacher(spec, device=device)
    raise TeacherError(f"unknown teacher {spec!r}: expected none, restormer:PATH, onnx:PATH, or a path ending in .pth, .pt or .onnx")


__all__ = [
    "Restormer",
    "load_restormer",
    "tiled_forward",
    "TeacherSpec",
    "SPEC_KEY",
    "OnnxTeacher",
    "RestormerTeacher",
    "make_teacher",
    "TeacherCache",
    "teacher_targets",
    "TeacherError",
    "Teacher",
]
