"""livesharp demo: the shipped clip through the shipped model, on CPU."""

import av
import cv2
from click.testing import CliRunner

from livesharp.cli import cli
from livesharp.demo import DATA


def test_the_shipped_clip_has_matching_sharp_frames():
    with av.open(str(DATA / "demo_blurry.mp4")) as b, av.open(str(DATA / "demo_sharp.mp4")) as s:
        assert b.streams.video[0].frames == s.streams.video[0].frames == 73
    assert "CC BY 4.0" in (DATA / "README.md").read_text()


def test_demo_writes_outputs_and_sharpens(tmp_path):
    r = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--no-preview", "--device", "cpu", "--frames", "10"])
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "livesharp_demo.mp4")) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (2560, 720)
        assert sum(1 for _ in c.decode(v)) == 10
    assert cv2.imread(str(tmp_path / "livesharp_demo.png")).shape == (720, 2560, 3)
    line = r.output.strip().splitlines()[-1]
    gain = float(line.split("(")[-1].split(" dB")[0])
    # The shipped model must improve its own demo, never degrade it. (v1 gained > 0.3 dB here
    # because the demo clip is its training scene; v2 is judged on unseen scenes and gains less.)
    assert gain > 0.0, line
    assert not list(tmp_path.glob(".*partial*"))
