"""Issue 32: never lose or quietly change what the user gave us. Each test makes real files in
tmp_path and runs livesharp on them the way a user would."""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from livesharp.cli import cli


def cam(*args: str):
    return CliRunner().invoke(cli, ["cam", "--no-preview", "--model", "unsharp", "--max-frames", "4", *args])


def test_cam_stats_never_overwrites_the_file_playing_as_the_camera(video):
    before = video.read_bytes()
    r = cam("--camera", str(video), "--stats", str(video))
    assert r.exit_code != 0
    assert r.output.strip().splitlines()[-1] == f"error: {video}: output is the input file; choose another output name (the input is never modified)"
    assert video.read_bytes() == before
    r = cam("--camera", str(video), "--stats", str(video), "--overwrite")  # not even when asked to replace outputs
    assert r.exit_code != 0 and video.read_bytes() == before


def test_cam_stats_does_not_replace_an_existing_file_without_overwrite(video, tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    r = cam("--camera", str(video), "--stats", str(other))
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert r.output.strip().splitlines()[-1] == f"error: {other}: already exists; pass --overwrite to replace it, or choose another name"
    assert other.read_text() == "mine"
    r = cam("--camera", str(video), "--stats", str(other), "--overwrite")
    assert r.exit_code == 0, r.output
    assert [json.loads(line)["frame"] for line in other.read_text().splitlines()] == [1, 2, 3, 4]


def test_cam_stats_is_published_only_when_the_session_ends(video, tmp_path, monkeypatch):
    """Written under a hidden name and renamed at the end: while frames flow, the name is absent."""
    from livesharp import sinks

    stats = tmp_path / "s.jsonl"
    seen = []
    write = sinks.StatsWriter.write

    def spy(self, record):
        seen.append((stats.exists(), sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".s.livesharp-partial-"))))
        write(self, record)

    monkeypatch.setattr(sinks.StatsWriter, "write", spy)
    r = cam("--camera", str(video), "--stats", str(stats))
    assert r.exit_code == 0, r.output
    assert seen and all(not exists and partial for exists, partial in seen)
    assert len(stats.read_text().splitlines()) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([video.name, "s.jsonl"])


@pytest.mark.parametrize("target", ["/dev/full", "/dev/null"])
def test_cam_stats_to_a_device_is_one_error_line_and_the_device_is_left_alone(video, target):
    if not os.path.exists(target):
        pytest.skip(f"no {target} here")
    kind = os.stat(target).st_mode
    for extra in ([], ["--overwrite"]):
        r = cam("--camera", str(video), "--stats", target, *extra)
        assert r.exit_code != 0 and "Traceback" not in r.output
        assert r.output.strip().splitlines()[-1].startswith(f"error: {target}: not a regular file")
    assert os.stat(target).st_mode == kind
