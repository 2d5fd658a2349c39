"""Tests for livesharp/files.py: outputs appear whole or not at all."""

import os

import pytest

from livesharp.files import OutputAppeared, atomic_output, partial_path


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


@pytest.mark.parametrize("hard_links", [True, False], ids=["link", "no-hard-links"])
def test_without_replace_a_target_that_appeared_is_kept_and_the_result_too(tmp_path, monkeypatch, hard_links):
    if not hard_links:  # a file system without hard links (FAT, some network shares)
        def no_link(src, dst):
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    target = tmp_path / "out.mp4"
    with pytest.raises(OutputAppeared) as e:
        with atomic_output(target, replace=False) as tmp:
            tmp.write_bytes(b"result")
            target.write_bytes(b"precious")  # appears while we write
    assert target.read_bytes() == b"precious"
    assert e.value.kept == tmp_path / "out.livesharp-not-replaced.mp4" and e.value.kept.read_bytes() == b"result"
    # A second clash does not replace the first kept result either.
    with pytest.raises(OutputAppeared) as e2:
        with atomic_output(target, replace=False) as tmp:
            tmp.write_bytes(b"again")
    assert e2.value.kept.name == "out.livesharp-not-replaced-2.mp4" and e2.value.kept.read_bytes() == b"again"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, e.value.kept.name, e2.value.kept.name])
    # With no clash, the result is published as usual.
    with atomic_output(tmp_path / "new.mp4", replace=False) as tmp:
        tmp.write_bytes(b"fresh")
    assert (tmp_path / "new.mp4").read_bytes() == b"fresh" and not any(tmp_path.glob(".*partial*"))


def test_a_legal_long_name_gets_temp_and_kept_names_that_fit(tmp_path):
    target = tmp_path / ("a" * 236 + ".mp4")  # 240 characters: a legal name
    assert len(partial_path(target).name.encode()) <= 255 and partial_path(target).suffix == ".mp4"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    with pytest.raises(OutputAppeared) as e:
        with atomic_output(target, replace=False) as tmp:
            tmp.write_bytes(b"again")
    assert e.value.kept.suffix == ".mp4" and e.value.kept.read_bytes() == b"again"
    multibyte = tmp_path / ("é" * 120 + ".png")  # 240 characters, 244 bytes: cut at a character, never inside one
    with atomic_output(multibyte) as tmp:
        tmp.write_bytes(b"ok")
    assert multibyte.read_bytes() == b"ok"


def test_a_replaced_file_keeps_its_permissions(tmp_path, video):
    """`file --overwrite` over a private (0600) output made the new one readable by everyone
    (0644): the temp file took the umask's mode, not the replaced file's."""
    from click.testing import CliRunner

    from livesharp.cli import cli

    out = tmp_path / "private.mp4"
    out.write_bytes(b"old")
    out.chmod(0o600)
    r = CliRunner().invoke(cli, ["file", str(video), str(out), "--model", "unsharp", "--preset", "ultrafast", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 3 and oct(out.stat().st_mode & 0o777) == oct(0o600)
