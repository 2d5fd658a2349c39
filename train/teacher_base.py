"""What every teacher shares: the ``Teacher`` interface, its error, and how a weights file is
named (cache keys depend on it). ``train.teachers`` is the front door to all of them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import torch


class TeacherError(ValueError):
    """A teacher spec, checkpoint or model that cannot be used; the message is one line for the user."""


class Teacher(Protocol):
    """What the training loop needs from a teacher."""

    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
