"""Any image-to-image ONNX model as a teacher (``onnx:PATH``), run by onnxruntime, fed as its
``TeacherSpec`` says (from the file's metadata, or inferred)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from livesharp.model import pad_to_multiple
from train.teacher_base import TeacherError, file_sha256


@dataclass(frozen=True)
class TeacherSpec:
    """How to feed an external model: sides padded (reflect) to ``multiple``, tensor ``layout``,
    and the ``value_range`` that [0, 1] maps to (``(0.0, 255.0)`` for 8-bit-style models).

    An ONNX file can carry its own spec as JSON in its metadata under ``SPEC_KEY`` (the MAXIM
    conversion, ``python -m train.maxim``, writes one), so the loop needs no per-model cases.
    """

    multiple: int = 8
    layout: Literal["nchw", "nhwc"] = "nchw"
    value_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        if self.multiple < 1:
            raise TeacherError(f"TeacherSpec.multiple must be >= 1, got {self.multiple}")
        if self.layout not in ("nchw", "nhwc"):
            raise TeacherError(f"TeacherSpec.layout must be 'nchw' or 'nhwc', got {self.layout!r}")
        lo, hi = self.value_range
        if not hi > lo:
            raise TeacherError(f"TeacherSpec.value_range must be (low, high) with high > low, got {self.value_range}")


    @classmethod
    def from_json(cls, text: str) -> "TeacherSpec":
        try:
            d = json.loads(text)
            return cls(multiple=int(d.get("multiple", 8)), layout=d.get("layout", "nchw"), value_range=tuple(float(v) for v in d.get("value_range", (0.0, 1.0))))
        except (ValueError, TypeError, AttributeError) as e:
            raise TeacherError(f"teacher spec {text[:80]!r} is not valid JSON of multiple/layout/value_range ({e})") from None


SPEC_KEY = "livesharp.teacher_spec"
_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(uint8)": np.uint8}


class OnnxTeacher:
    """Any image-to-image ONNX model as a teacher, run by onnxruntime.

    Args:
        path: the ``.onnx`` file.
        spec: padding, layout and value range. If omitted: the spec in the file's metadata
            (``SPEC_KEY``) if it has one; else the layout is read from the model's input shape
            (rank 4 with 3 last -> nhwc) and the rest are ``TeacherSpec`` defaults.
        device: "cuda" uses onnxruntime's CUDA provider when it is installed; otherwise CPU.

    ``__call__``: (N, 3, H, W) float in [0, 1] -> (N, 3, H, W) float32 in [0, 1], same device.
    ``name`` is ``"onnx:<file stem>:<first 12 hex of the file's sha256>"``.
    """

    def __init__(self, path: str | Path, spec: TeacherSpec | None = None, device: str | torch.device = "cpu"):
        try:
            import onnxruntime as ort
        except ImportError:
            raise TeacherError('ONNX teachers need onnxruntime: pip install "livesharp[onnx]"') from None
        path = Path(path)
        if not path.is_file():
            raise TeacherError(f"{path}: no such file")
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            detail = (str(e).splitlines() or [""])[0][:160]
            raise TeacherError(f"{path}: not a loadable ONNX model ({type(e).__name__}: {detail})") from None

        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4:
            raise TeacherError(f"{path}: expected one image input of rank 4, got shape {inp.shape}")
        if inp.type not in _ONNX_DTYPES:
            raise TeacherError(f"{path}: unsupported input type {inp.type} (expected one of {', '.join(_ONNX_DTYPES)})")
        self.input_name = inp.name
        self.input_dtype = _ONNX_DTYPES[inp.type]
        stored = self.session.get_modelmeta().custom_metadata_map.get(SPEC_KEY)
        self.spec = spec or (TeacherSpec.from_json(stored) if stored else TeacherSpec(layout="nhwc" if inp.shape[-1] == 3 else "nchw"))
        # Static sizes, by axis name: a model exported for fixed shapes accepts nothing else.
        dims = dict(zip("nhwc" if self.spec.layout == "nhwc" else "nchw", inp.shape))
        self.fixed = {a: d for a, d in dims.items() if isinstance(d, int)}
        if self.fixed.get("c", 3) != 3:
            raise TeacherError(f"{path}: input shape {inp.shape} has no 3-channel axis where layout {self.spec.layout} puts it")
        self.path = path
        self.name = f"onnx:{path.stem}:{file_sha256(path)[:12]}"

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x.detach().float().cpu(), spec.multiple)
        hp, wp = xp.shape[-2:]
        for axis, size in (("h", hp), ("w", wp)):
            if axis in self.fixed and self.fixed[axis] != size:
                raise TeacherError(f"{self.path}: model takes a fixed {axis.upper()} of {self.fixed[axis]}, got {size} (after padding)")
        lo, hi = spec.value_range
        a = xp.numpy() * (hi - lo) + lo
        if spec.layout == "nhwc":
            a = a.transpose(0, 2, 3, 1)
        if self.input_dtype == np.uint8:
            a = np.clip(np.rint(a), 0, 255)
        a = np.ascontiguousarray(a, dtype=self.input_dtype)
        # A model exported for batch 1 gets the frames one at a time.
        batches = [a[i : i + 1] for i in range(len(a))] if self.fixed.get("n") == 1 else [a]
        y = np.concatenate([self.session.run(None, {self.input_name: b})[0] for b in batches]).astype(np.float32)
        if spec.layout == "nhwc" and y.ndim == 4:
            y = y.transpose(0, 3, 1, 2)
        if y.shape != (len(a), 3, hp, wp):
            raise TeacherError(f"{self.path}: output shape {y.shape} (as NCHW) does not match the input {(len(a), 3, hp, wp)}")
        y = (torch.from_numpy(np.ascontiguousarray(y)) - lo) / (hi - lo)
        return y[..., :h, :w].clamp_(0, 1).to(x.device)
