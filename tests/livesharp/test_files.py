"""Tests for livesharp/files.py: outputs appear whole or not at all."""

import os

import pytest

from livesharp.files import atomic_output, partial_path


def test_the_target_appears_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "out.mp4"
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.livesharp-partial-") and tmp.suffix == ".mp4"
        tmp.write_bytes(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failure_leaves_the_old_target_and_no_temp_file(tmp_path, error):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(error):
        with atomic_output(target, companions=(".bin",)) as tmp:
            tmp.write_bytes(b"half")
            tmp.with_suffix(".bin").write_bytes(b"half")
            raise error
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_companions_move_with_the_main_file(tmp_path):
    target = tmp_path / "net.xml"
    with atomic_output(target, companions=(".bin",)) as tmp:
        tmp.write_text("graph")
        tmp.with_suffix(".bin").write_text("weights")
    assert target.read_text() == "graph" and (tmp_path / "net.bin").read_text() == "weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.bin", "net.xml"]


def test_temp_names_are_unique_and_name_the_process(tmp_path):
    a, b = partial_path(tmp_path / "x.pt"), partial_path(tmp_path / "x.pt")
    assert a != b and f"-{os.getpid()}-" in a.name
