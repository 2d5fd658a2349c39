"""Students with known behaviour, for the engine, pipeline and CLI tests."""

import logging

import pytest
import torch

from livesharp.model import VARIANTS, Student


def make_identity_student(variant: str = "tiny") -> Student:
    """A student whose last conv is zero: its residual is zero, so it returns its input."""
    net = Student(VARIANTS[variant]).eval()
    with torch.no_grad():
        net.ending.weight.zero_()
        net.ending.bias.zero_()
    return net


def make_random_student(variant: str = "tiny", seed: int = 0, scale: float = 0.1) -> Student:
    """A student that changes pictures: every weight drawn at random, including the ones
    (last conv, block scales) that start at zero."""
    net = Student(VARIANTS[variant]).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return net


@pytest.fixture
def identity_student():
    """``identity_student(variant="tiny")`` -> a Student that returns its input exactly."""
    return make_identity_student


@pytest.fixture
def random_student():
    """``random_student(variant="tiny", seed=0)`` -> a Student with random weights everywhere."""
    return make_random_student


@pytest.fixture
def livesharp_warnings():
    """The warning lines livesharp logs during the test, read from its own logger (the CLI
    stops that logger from propagating, so the root logger may never see them)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                lines.append(record.getMessage())

    logger, handler = logging.getLogger("livesharp"), Collect()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
