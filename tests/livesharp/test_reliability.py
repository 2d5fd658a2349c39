"""Issue 32: never lose or quietly change what the user gave us. Each test makes real files in
tmp_path and runs livesharp on them the way a user would."""

import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from livesharp.cli import cli
from tests.conftest import remux


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


def ffmpeg(*args: str) -> None:
    """Make a test file with the ffmpeg command line (the product itself never runs it)."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=120)


def run_file(src, dst, **kwargs):
    from livesharp.pipeline import process_file

    return process_file(src, dst, model="unsharp", device="cpu", preset="ultrafast", progress=False, **kwargs)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("side_by_side", [False, True])
def test_anamorphic_video_keeps_its_pixel_aspect_ratio(tmp_path, suffix, side_by_side):
    import av
    from fractions import Fraction

    src = tmp_path / f"pal{suffix}"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10", "-t", "1", "-vf", "setsar=64/45", "-c:v", "libx264", "-preset", "ultrafast", str(src))
    out = tmp_path / f"out{suffix}"
    run_file(src, out, side_by_side=side_by_side)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.sample_aspect_ratio == Fraction(64, 45)
        assert v.display_aspect_ratio == Fraction(96 * (2 if side_by_side else 1) * 64, 64 * 45)


def write_yuv(path: Path, planes, *, full_range: bool, frames: int = 3, space: int = 1) -> Path:
    """A lossless H.264 clip whose every frame is exactly these (Y, U, V) 8-bit planes."""
    import av
    import numpy as np

    y, u, v = planes
    h, w = y.shape
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast", "qp": "0"}
        cc = s.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = space
        cc.color_range = 2 if full_range else 1
        for _ in range(frames):
            f = av.VideoFrame.from_ndarray(np.concatenate([y, u.reshape(h // 4, w), v.reshape(h // 4, w)]), format="yuv420p")
            f.colorspace = f.color_primaries = f.color_trc = space
            f.color_range = cc.color_range
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    return path


def planes_of(path: Path):
    import av
    import numpy as np

    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        return [np.frombuffer(bytes(p), np.uint8).reshape(-1, p.line_size)[:, : p.width] for p in f.planes]


@pytest.mark.parametrize("space", [1, 6, 9], ids=["bt709", "bt601", "bt2020"])
def test_full_range_grey_stays_neutral(tmp_path, space):
    """Grey in, grey out: U = V = 128 exactly (full range used to write 127: R and B ~2 levels under G)."""
    import numpy as np

    w, h, full_range = 64, 48, True
    for level in (16, 128, 235):
        src = write_yuv(tmp_path / f"grey{level}.mkv", [np.full((h, w), level, np.uint8), *[np.full((h // 2, w // 2), 128, np.uint8)] * 2],
                        full_range=full_range, space=space)
        out = tmp_path / f"out{level}.mkv"
        run_file(src, out)
        y, u, v = planes_of(out)
        assert (np.median(y), np.median(u), np.median(v)) == (level, 128, 128)


def run_image(src, dst, **kwargs):
    from livesharp.pipeline import process_image

    return process_image(src, dst, model="unsharp", device="cpu", **kwargs)


def photo(h: int = 96, w: int = 128):
    import numpy as np

    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 2 % 256, y * 2 % 256, (x + y) % 256], -1).astype(np.uint8)


@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
@pytest.mark.parametrize("name", ["cut.jpg", "cut.jfif", "cut.png", "cut"])
def test_a_truncated_jpeg_or_png_is_refused_whatever_its_name(tmp_path, name, kind, capfd):
    """A PNG cut short was once called \"not an image OpenCV can read; pass a PNG or JPEG\",
    after a line of libpng's own."""
    import cv2

    from livesharp.errors import LivesharpError

    data = cv2.imencode(f".{kind.lower()}", photo())[1].tobytes()
    src = tmp_path / name
    src.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(LivesharpError, match=f"truncated {kind}: the file ends before the picture does"):
        run_image(src, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()
    assert capfd.readouterr().err == ""  # nothing from the C libraries either


@pytest.mark.parametrize("name, depth", [("grey.png", np.uint8), ("grey16.png", np.uint16), ("grey.jpg", np.uint8)])
def test_a_grey_picture_is_written_grey(tmp_path, name, depth, livesharp_warnings):
    """It came out as three equal colour channels: three times the data, another format."""
    import cv2

    src = tmp_path / name
    grey = cv2.cvtColor(photo(), cv2.COLOR_RGB2GRAY).astype(depth) * (257 if depth == np.uint16 else 1)
    cv2.imwrite(str(src), grey)
    out = tmp_path / f"out{Path(name).suffix}"
    run_image(src, out)
    written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert written.ndim == 2 and written.dtype == depth and written.shape == grey.shape
    assert 0 < np.abs(written.astype(float) - cv2.imread(str(src), cv2.IMREAD_UNCHANGED)).mean() < 5 * (257 if depth == np.uint16 else 1)
    assert livesharp_warnings == []


@pytest.mark.parametrize("into", [".png", ".jpg", ".tiff"])
@pytest.mark.parametrize("made", ["PNG", "JPEG", "TIFF"])
def test_a_pictures_resolution_is_kept(tmp_path, made, into, livesharp_warnings):
    """A 300 dpi scan came out with OpenCV's none: printed at another size, without a word."""
    from PIL import Image

    src = tmp_path / f"scan.{made.lower()}"
    Image.fromarray(photo()).save(src, made, dpi=(300, 150))
    out = tmp_path / f"out{into}"
    run_image(src, out)
    with Image.open(out) as im:
        assert [round(d) for d in im.info["dpi"]] == [300, 150]
    assert livesharp_warnings == []


def test_a_resolution_the_output_cannot_store_is_said_to_be_dropped(tmp_path, livesharp_warnings):
    from PIL import Image

    src = tmp_path / "scan.png"
    Image.fromarray(photo()).save(src, "PNG", dpi=(300, 300))
    run_image(src, tmp_path / "out.bmp")
    assert livesharp_warnings == ["scan.png: its resolution (300 dpi) is not copied: livesharp cannot store it in .bmp; write .png, .jpg or .tiff to keep it"]


def test_a_float32_tiff_is_read_as_0_to_1_and_written_8_bit_with_a_warning(tmp_path, livesharp_warnings):
    import cv2
    import numpy as np

    rgb = photo()
    src = tmp_path / "f32.tiff"
    assert cv2.imwrite(str(src), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.float32) / 255)
    out = run_image(src, tmp_path / "out.png", strength=0.0)  # strength 0: the picture as read
    back = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert np.abs(back.astype(int) - rgb).max() <= 1
    assert livesharp_warnings == ["f32.tiff has float32 samples: read as 0..1 and written as 8-bit"]


@pytest.mark.parametrize("args, words", [
    (["--size", "0x0"], "'0x0': width and height must be at least"),
    (["--size", "-64x48"], "at least"),
    (["--size", "9x7"], "'9x7': bench needs even sides (H.264 yuv420p), e.g. 10x8"),
    (["--preset", "nope"], "'nope' is not one of"),
])
def test_bad_bench_options_are_one_line(args, words):
    r = CliRunner().invoke(cli, ["bench", "--model", "unsharp", "--frames", "2", "--runs", "1", *args])
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("at", [1, 20], ids=["while-writing", "before-publishing"])
def test_an_output_folder_deleted_mid_run_is_one_error_line(video, tmp_path, at):
    import shutil

    from livesharp.errors import LivesharpError

    folder = tmp_path / "out"
    folder.mkdir()
    seen = []

    def delete(*_):
        seen.append(1)
        if len(seen) == at:
            shutil.rmtree(folder)

    with pytest.raises(LivesharpError, match=r"out\.mp4: .*the output folder .*was removed"):
        run_file(video, folder / "out.mp4", on_frame=delete)


def test_ctrl_c_while_the_input_blocks_on_open_is_reported_as_interrupted(tmp_path, ctrl_c):
    """A FIFO nobody writes to blocks av.open; Ctrl-C there is an interruption, not a bad file."""
    import signal
    import subprocess
    import sys
    import time

    fifo = tmp_path / "in.mp4"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "livesharp", "file", str(fifo), str(tmp_path / "out.mp4"), "--model", "unsharp"],
                            stderr=subprocess.PIPE, text=True)
    _wait_until_blocked_opening_a_fifo(proc.pid, fallback_s=3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted: ") and "not a video file" not in err


def _wait_until_blocked_opening_a_fifo(pid: int, fallback_s: float, timeout_s: float = 60) -> None:
    """Until a thread of ``pid`` waits in the kernel for a FIFO's writer (Linux names that wait
    ``wait_for_partner`` in /proc/PID/task/*/wchan): start-up takes longer on a loaded machine
    than any fixed wait. Where the kernel does not name waits (a sleeping child shows "0" or
    nothing), ``fallback_s`` seconds."""
    import glob
    import subprocess
    import time

    probe = subprocess.Popen(["sleep", "5"])
    try:
        time.sleep(0.2)
        named = Path(f"/proc/{probe.pid}/wchan").read_text().strip() not in ("", "0")
    except OSError:
        named = False
    finally:
        probe.kill()
        probe.wait()
    if not named:
        time.sleep(fallback_s)
        return
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        waits = []
        for path in glob.glob(f"/proc/{pid}/task/*/wchan"):
            try:
                waits.append(Path(path).read_text().strip())
            except OSError:
                pass
        if "wait_for_partner" in waits:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never blocked opening the FIFO within {timeout_s} s")


def test_an_output_that_is_a_dangling_symlink_is_refused_before_the_run(video, tmp_path):
    from livesharp.errors import LivesharpError

    link = tmp_path / "out.mp4"
    link.symlink_to(tmp_path / "gone" / "x.mp4")
    with pytest.raises(LivesharpError, match=r"already exists \(a symbolic link to .*x\.mp4, which does not exist\); pass --overwrite"):
        run_file(video, link)
    assert link.is_symlink() and not (tmp_path / "gone").exists()


def test_an_output_named_only_by_its_suffix_is_refused(video, tmp_path):
    r = CliRunner().invoke(cli, ["file", str(video), str(tmp_path / ".mp4"), "--model", "unsharp"])
    assert r.exit_code == 1
    assert r.output.strip() == f"error: {tmp_path / '.mp4'}: the name is only a suffix; give a name before it, such as {tmp_path / 'sharp.mp4'}"


def test_an_animated_webp_is_named_as_such_not_called_damaged(tmp_path):
    import cv2

    from livesharp.errors import LivesharpError

    # An animated WebP made by hand: VP8L frames from OpenCV in ANMF chunks.
    frames = [cv2.imencode(".webp", photo(32, 32) // (i + 1), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()[12:] for i in range(3)]

    def chunk(tag: bytes, body: bytes) -> bytes:
        return tag + len(body).to_bytes(4, "little") + body + (b"\0" if len(body) % 2 else b"")

    vp8x = chunk(b"VP8X", bytes([0x02, 0, 0, 0]) + (31).to_bytes(3, "little") + (31).to_bytes(3, "little"))
    anim = chunk(b"ANIM", bytes(4) + (0).to_bytes(2, "little"))
    anmf = b"".join(chunk(b"ANMF", bytes(6) + (31).to_bytes(3, "little") + (31).to_bytes(3, "little") + (100).to_bytes(3, "little") + b"\0" + f)
                    for f in frames)
    body = b"WEBP" + vp8x + anim + anmf
    src = tmp_path / "anim.webp"
    src.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    with pytest.raises(LivesharpError, match="animated WebP, which FFmpeg cannot decode"):
        run_file(src, tmp_path / "out.mp4")


def audio_and_video_starts(path: Path) -> tuple[int, float, float]:
    """(audio packets, first audio time, first video frame time) as a player sees them."""
    import av

    with av.open(str(path)) as c:
        a = [p for p in c.demux(audio=0) if p.size]
        first_audio = min(float(p.pts * p.time_base) for p in a)
    with av.open(str(path)) as c:
        first_video = float(next(c.decode(video=0)).time)
    return len(a), first_audio, first_video


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_audio_that_starts_before_the_first_video_frame_is_kept(video_with_audio, tmp_path, suffix):
    src = remux(video_with_audio, tmp_path / "early_audio.mkv", shift=0.52, kinds=("video",))
    n_in, a_in, v_in = audio_and_video_starts(src)
    assert v_in - a_in >= 0.52  # (and the AAC encoder's priming, before 0)
    out = tmp_path / f"out{suffix}"
    run_file(src, out)
    n_out, a_out, v_out = audio_and_video_starts(out)
    assert n_out == n_in  # every packet, the 0.52 s before the picture included
    assert v_out - a_out == pytest.approx(v_in - a_in, abs=0.01)  # and still that far ahead of the picture


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
@pytest.mark.parametrize("lead", [0.002, 0.03])
def test_audio_that_leads_the_picture_by_less_than_a_frame_is_kept_bit_exact(tmp_path, suffix, lead):
    """48 kHz audio whose first packets (21 ms each) are over before the first video frame, as
    encoders and muxers commonly leave it: those packets were once left out."""
    plain = tmp_path / "plain.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1", "-f", "lavfi", "-i", "sine=f=440:d=1:r=48000",
           "-c:v", "libx264", "-c:a", "aac", str(plain))
    src = tmp_path / f"lead{suffix}"
    ffmpeg("-itsoffset", str(lead), "-i", str(plain), "-i", str(plain), "-map", "0:v", "-map", "1:a", "-c", "copy", str(src))
    n_in, a_in, v_in = audio_and_video_starts(src)
    out = tmp_path / f"out{suffix}"
    run_file(src, out)
    n_out, a_out, v_out = audio_and_video_starts(out)
    kept, given = audio_packets(out), audio_packets(src)
    assert len(kept) == len(given) and kept == given  # every packet, bit for bit
    assert v_out - a_out == pytest.approx(v_in - a_in, abs=0.002)


@pytest.mark.parametrize("lead", [0.5, 0.1, 0.045])
def test_subtitle_cues_before_the_first_video_frame_are_kept_where_they_were(tmp_path, lead):
    """A file with subtitles and no audio: the cue before the picture was once left out, and
    the one spanning its start clamped to it (0.2 s late)."""
    import av

    srt = tmp_path / "cues.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,020\nvery early\n\n2\n00:00:00,300 --> 00:00:00,600\nnormal\n")
    plain = tmp_path / "plain.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1", "-c:v", "libx264", str(plain))
    src = tmp_path / "cues.mkv"
    ffmpeg("-itsoffset", str(lead), "-i", str(plain), "-i", str(srt), "-map", "0:v", "-map", "1", "-c:v", "copy", "-c:s", "srt", str(src))

    def cues(path):
        with av.open(str(path)) as c:
            first = float(next(c.decode(video=0)).time)
        with av.open(str(path)) as c:
            return [(round(float(p.pts * p.time_base) - first, 3), bytes(p)) for p in c.demux(subtitles=0) if p.size]

    out = tmp_path / "out.mkv"
    run_file(src, out)
    assert len(cues(src)) == 2 and cues(out) == cues(src)  # both, as far from the first frame as they were


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_matroska_attachment_is_kept_or_said_to_be_left_out(tmp_path, suffix, livesharp_warnings):
    """A font an ASS subtitle track needs was left out of an .mkv output, which can hold it,
    with "it cannot be copied"."""
    import av

    font = tmp_path / "Sign Font.ttf"
    font.write_bytes(bytes(range(256)) * 8)  # stands in for a font: copied, never read
    src = tmp_path / "fonts.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=0.5", "-c:v", "libx264", "-attach", str(font),
           "-metadata:s:t", "mimetype=font/ttf", str(src))
    out = tmp_path / f"out{suffix}"
    run_file(src, out)
    with av.open(str(out)) as c:
        kept = [(a.name, a.mimetype, bytes(a.data)) for a in c.streams if a.type == "attachment"]
    if suffix == ".mkv":
        assert kept == [("Sign Font.ttf", "font/ttf", font.read_bytes())] and livesharp_warnings == []
    else:
        assert kept == [] and livesharp_warnings == ["not copied: attachment Sign Font.ttf (font/ttf): .mp4 cannot hold attachments; write .mkv to keep it"]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_cover_art_is_kept_in_mp4_and_mkv_or_said_to_be_left_out(tmp_path, suffix, livesharp_warnings):
    """An MP4's cover art was dropped as a second video stream ("livesharp writes one video
    stream"), though an MP4 output holds it; and from .mkv, which keeps cover art as an
    attachment (said to be unable to)."""
    import av
    import cv2

    cover = tmp_path / "cover.jpg"
    cv2.imwrite(str(cover), photo(32, 32))
    src = tmp_path / "art.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=0.5", "-i", str(cover), "-map", "0", "-map", "1", "-c:v:0", "libx264",
           "-c:v:1", "copy", "-disposition:v:1", "attached_pic", str(src))
    out = tmp_path / f"out{suffix}"
    run_file(src, out)

    def pictures(path):
        with av.open(str(path)) as c:
            pics = [s for s in c.streams.video if av.stream.Disposition.attached_pic in s.disposition]
            return [bytes(p) for p in c.demux(pics) if p.size] if pics else []

    if suffix in (".mp4", ".mkv"):
        assert pictures(out) == pictures(src) == [cover.read_bytes()] and livesharp_warnings == []
    else:
        assert pictures(out) == [] and livesharp_warnings == [
            "not copied: video stream 1 (mjpeg, 32x32), an attached picture (cover art): .mov cannot hold it as one; write .mp4 or .mkv to keep it"]
    if suffix == ".mkv":  # and from .mkv into .mkv again
        again = tmp_path / "again.mkv"
        run_file(out, again)
        assert pictures(again) == [cover.read_bytes()] and livesharp_warnings == []


def audio_packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def test_an_avi_with_b_frames_is_not_called_damaged(tmp_path):
    """AVI stores no presentation times; with B-frames the demuxer's guesses came back out of
    order and a valid file was refused as \"damaged timing\"."""
    import av

    src = tmp_path / "bframes.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1", "-f", "lavfi", "-i", "sine=d=1", "-c:v", "libx264", "-bf", "2",
           "-c:a", "pcm_s16le", str(src))
    out = tmp_path / "out.mkv"
    run_file(src, out)
    with av.open(str(out)) as c:
        times = [float(f.time) for f in c.decode(video=0)]
    assert len(times) == 10 and all(abs(b - a - 0.1) < 1e-3 for a, b in zip(times, times[1:]))  # every frame, one period apart
    assert audio_packets(out) == audio_packets(src)


def test_an_avi_with_empty_repeat_chunks_is_not_called_truncated(tmp_path, probe):
    """AVI stores a repeated frame as a 0-byte chunk: its header counts it, the demuxer skips it."""
    src = tmp_path / "xvid.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "2", "-r", "25", "-fps_mode", "vfr", "-c:v", "mpeg4", "-vtag", "xvid", str(src))
    import av

    with av.open(str(src)) as c:
        declared = c.streams.video[0].frames
    a = probe(src)
    assert len(a.frames) < declared  # the case: fewer pictures stored than the header lists
    out = tmp_path / "out.mp4"
    run_file(src, out)
    b = probe(out)
    assert len(b.frames) == len(a.frames)
    assert b.times == pytest.approx([t - a.times[0] for t in a.times], abs=1e-3)
    assert b.duration == pytest.approx(2.0, abs=0.05)


def test_an_avi_cut_short_is_still_refused(tmp_path):
    from livesharp.errors import LivesharpError

    src = tmp_path / "xvid.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "2", "-r", "25", "-fps_mode", "vfr", "-c:v", "mpeg4", "-vtag", "xvid", str(src))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 7 // 10])
    with pytest.raises(LivesharpError, match="truncated or damaged|damaged video data"):
        run_file(cut, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


def test_the_real_video_is_chosen_over_a_one_frame_cover_picture(tmp_path, livesharp_warnings):
    clip, cover = tmp_path / "clip.mp4", tmp_path / "cover.jpg"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", str(clip))
    ffmpeg("-f", "lavfi", "-i", "color=red:size=32x32", "-frames:v", "1", str(cover))
    src = tmp_path / "with_cover.mkv"
    ffmpeg("-i", str(cover), "-i", str(clip), "-map", "0", "-map", "1", "-c", "copy", str(src))  # the cover is stream 0
    r = run_file(src, tmp_path / "out.mp4")
    assert (r.frames, r.width, r.height) == (20, 64, 48)
    assert livesharp_warnings == ["not copied: video stream 0 (mjpeg, 32x32): livesharp writes one video stream, the main one"]


def test_frames_the_decoder_drops_are_not_passed_off_as_a_good_file(tmp_path):
    """The second GOP's keyframe lost: the decoder skips frames until the next keyframe."""
    import av

    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from test_io import write_clip

    from livesharp.errors import LivesharpError

    full = write_clip(tmp_path / "full.mp4", frames=40, gop=10, audio=False)
    src = tmp_path / "lost_key.mkv"
    with av.open(str(full)) as i, av.open(str(src), "w") as o:
        v = o.add_stream_from_template(i.streams.video[0])
        keys = 0
        for packet in i.demux(video=0):
            if packet.dts is None:
                continue
            if packet.is_keyframe:
                keys += 1
                if keys == 2:
                    continue
            packet.stream = v
            o.mux(packet)
    with pytest.raises(LivesharpError, match=r"damaged video data: the decoder could not decode \d+ of the 39 stored frames"):
        run_file(src, tmp_path / "out.mkv")
    assert not (tmp_path / "out.mkv").exists()


@pytest.mark.parametrize("frames", [1, 3])
def test_a_looping_file_camera_keeps_its_frame_rate_across_loops(make_video, frames):
    import time

    from livesharp.sources import FileSource

    src = make_video(f"f{frames}.mp4", frames=frames, rate=10)
    with FileSource(src, loop=True) as s:
        t0 = time.monotonic()
        got = [s.read() for _ in range(7)]
        took = time.monotonic() - t0
    assert all(f is not None for f in got)
    # 7 frames at 10 FPS: 0.6 s from the first to the last. Never faster; slower only by what a busy
    # machine adds (0.71 s beside two training runs), well short of the 1.2 s that a frame
    # period lost at each of the single frame's six loops would take.
    assert 0.55 <= took <= 0.9


def bmp16(path: Path, rgb565, *, top_down: bool = False) -> Path:
    """A 16-bit BMP (BI_BITFIELDS, 5-6-5) of these (H, W) uint16 pixels."""
    import numpy as np

    h, w = rgb565.shape
    stride = (w * 2 + 3) // 4 * 4
    rows = np.zeros((h, stride), np.uint8)
    rows[:, : w * 2] = rgb565.astype("<u2").view(np.uint8).reshape(h, w * 2)
    pixels = (rows if top_down else rows[::-1]).tobytes()
    info = (40).to_bytes(4, "little") + w.to_bytes(4, "little") + (-h if top_down else h).to_bytes(4, "little", signed=True)
    info += (1).to_bytes(2, "little") + (16).to_bytes(2, "little") + (3).to_bytes(4, "little") + len(pixels).to_bytes(4, "little") + bytes(16)
    masks = b"".join(m.to_bytes(4, "little") for m in (0xF800, 0x07E0, 0x001F))
    off = 14 + len(info) + len(masks)
    path.write_bytes(b"BM" + (off + len(pixels)).to_bytes(4, "little") + bytes(4) + off.to_bytes(4, "little") + info + masks + pixels)
    return path


@pytest.mark.parametrize("top_down", [False, True])
def test_an_rgb565_bmp_is_read_at_full_scale(tmp_path, top_down):
    import cv2
    import numpy as np

    r5, g6, b5 = np.meshgrid(np.arange(32), np.arange(0, 64, 2), [0, 31], indexing="ij")
    r5, g6, b5 = r5.reshape(32, -1), g6.reshape(32, -1), b5.reshape(32, -1)  # 32 x 64: every red, every other green
    src = bmp16(tmp_path / "565.bmp", (r5 << 11) | (g6 << 5) | b5, top_down=top_down)
    out = run_image(src, tmp_path / "out.png", strength=0.0)
    back = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB).astype(int)
    want = np.stack([np.round(r5 * 255 / 31), np.round(g6 * 255 / 63), np.round(b5 * 255 / 31)], -1)
    assert np.abs(back - want).max() <= 1  # white is 255, not 248


def side_data(path: Path) -> dict:
    """The first frame's HDR side data, as bytes by type name."""
    import av

    from livesharp.io import frame_side_data

    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        return {k: v for k, v in frame_side_data(f).items() if k in ("MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL")}


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_hdr10_mastering_display_and_content_light_are_kept(tmp_path, suffix):
    src = tmp_path / "hdr.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "1", "-pix_fmt", "yuv420p10le", "-c:v", "libx265", "-x265-params",
           "log-level=0:hdr10=1:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc:"
           "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400", str(src))
    before = side_data(src)
    assert set(before) == {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"}
    out = tmp_path / f"out{suffix}"
    run_file(src, out)
    assert side_data(out) == before


def test_interlaced_input_is_said_once(tmp_path, livesharp_warnings):
    src = tmp_path / "tff.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-t", "1", "-vf", "setfield=tff", "-flags", "+ilme+ildct",
           "-c:v", "libx264", "-preset", "ultrafast", str(src))
    run_file(src, tmp_path / "out.mkv")
    assert [w for w in livesharp_warnings if "interlaced" in w] == [
        "tff.mkv is interlaced: it is sharpened and written as whole (progressive) frames; deinterlace it first for the best result "
        f"(e.g. ffmpeg -i {shlex.quote(str(src))} -vf bwdif -c:a copy progressive.mkv)"]  # the path as given: the command runs from anywhere


def test_alpha_in_a_video_is_said_to_be_dropped(tmp_path, livesharp_warnings):
    src = tmp_path / "alpha.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "1", "-vf", "format=rgba", "-c:v", "png", str(src))
    run_file(src, tmp_path / "out.mp4")
    assert livesharp_warnings == ["alpha.mov has transparency (an alpha channel, rgba) and H.264 cannot store it: it is dropped",
                                  "alpha.mov is RGB (rgba) and livesharp writes 8-bit 4:2:0 H.264: its colour is stored at lower resolution"]


def test_vp9_alpha_is_said_to_be_dropped_and_not_claimed_by_the_output(tmp_path, livesharp_warnings):
    """WebM keeps VP9's alpha beside the picture, flagged by a tag: the warning once missed it,
    and the tag was copied onto the H.264 output, which has no alpha."""
    import av

    src = tmp_path / "alpha.webm"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "0.5", "-vf", "format=rgba,geq=r='r(X,Y)':a='X*4',format=yuva420p",
           "-c:v", "libvpx-vp9", "-deadline", "realtime", "-auto-alt-ref", "0", str(src))
    out = tmp_path / "out.mkv"
    run_file(src, out)
    assert livesharp_warnings == ["alpha.webm has transparency (an alpha channel, yuv420p, VP9 alpha) and H.264 cannot store it: it is dropped"]
    with av.open(str(out)) as c:
        assert not [k for k in c.streams.video[0].metadata if k.lower() == "alpha_mode"]


@pytest.mark.parametrize("key, said", [("video_10bit", "is 10-bit (yuv420p10le) and livesharp writes 8-bit 4:2:0 H.264: its finer steps of tone are not kept"),
                                       ("video_yuv444", "is 4:4:4 (yuv444p) and livesharp writes 8-bit 4:2:0 H.264: its colour is stored at lower resolution")])
def test_what_an_8_bit_4_2_0_output_loses_is_said(request, tmp_path, livesharp_warnings, key, said):
    src = request.getfixturevalue(key)
    run_file(src, tmp_path / "out.mkv")
    assert livesharp_warnings == [f"{src.name} {said}"]


PROFILE = b"\x00\x00\x02\x0clcms\x02\x10\x00\x00mntrRGB XYZ " + bytes(range(256)) * 3  # stands in for an ICC profile


def jpeg_icc(data: bytes) -> bytes:
    """The ICC profile a JPEG's APP2 segments carry, joined in order."""
    parts, i = {}, 2
    while data[i] == 0xFF and data[i + 1] not in (0xDA, 0xD9):
        n = int.from_bytes(data[i + 2 : i + 4], "big")
        body = data[i + 4 : i + 2 + n]
        if data[i + 1] == 0xE2 and body.startswith(b"ICC_PROFILE\x00"):
            parts[body[12]] = body[14:]
        i += 2 + n
    return b"".join(parts[k] for k in sorted(parts))


def jpeg_with(segments: list[bytes]) -> bytes:
    import cv2

    data = cv2.imencode(".jpg", photo())[1].tobytes()
    return data[:2] + b"".join(segments) + data[2:]


def app(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body


def png_chunks(data: bytes) -> dict:
    import zlib

    out, i = {}, 8
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        kind, body = data[i + 4 : i + 8], data[i + 8 : i + 8 + n]
        assert zlib.crc32(kind + body) == int.from_bytes(data[i + 8 + n : i + 12 + n], "big")
        out.setdefault(kind.decode(), []).append(body)
        i += 12 + n
    return out


def test_a_jpeg_colour_profile_is_kept_in_png_and_jpeg_and_the_rest_is_named(tmp_path, livesharp_warnings):
    import zlib

    exif = app(0xE1, b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    icc = app(0xE2, b"ICC_PROFILE\x00\x01\x01" + PROFILE)
    src = tmp_path / "in.jpg"
    src.write_bytes(jpeg_with([exif, icc]))

    run_image(src, tmp_path / "out.png")
    chunks = png_chunks((tmp_path / "out.png").read_bytes())
    name, _, rest = chunks["iCCP"][0].partition(b"\x00")
    assert rest[0] == 0 and zlib.decompress(rest[1:]) == PROFILE
    assert livesharp_warnings == ["in.jpg: not copied: EXIF metadata"]

    run_image(src, tmp_path / "out.jpg")
    assert jpeg_icc((tmp_path / "out.jpg").read_bytes()) == PROFILE

    livesharp_warnings.clear()
    run_image(src, tmp_path / "out.tiff")
    assert livesharp_warnings == ["in.jpg: its colour profile (ICC) cannot be stored in .tiff by livesharp and is dropped: colours may look different; "
                                  "write .png or .jpg to keep it", "in.jpg: not copied: EXIF metadata"]


def test_a_png_colour_profile_and_text_are_kept_or_named(tmp_path, livesharp_warnings):
    import zlib

    import cv2

    data = cv2.imencode(".png", photo())[1].tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    extra = chunk(b"iCCP", b"Display P3\x00\x00" + zlib.compress(PROFILE)) + chunk(b"tEXt", b"Comment\x00hello")
    src = tmp_path / "in.png"
    src.write_bytes(data[:33] + extra + data[33:])  # after the signature and IHDR
    run_image(src, tmp_path / "out.jpg")
    assert jpeg_icc((tmp_path / "out.jpg").read_bytes()) == PROFILE
    assert livesharp_warnings == ["in.png: not copied: PNG text (Comment)"]


def test_a_tiffs_colour_profile_is_kept_in_png_or_named(tmp_path, livesharp_warnings):
    """It was dropped in silence: only JPEG, PNG and WebP were read for one."""
    import zlib

    from PIL import Image

    src = tmp_path / "scan.tiff"
    Image.fromarray(photo()).save(src, "TIFF", icc_profile=PROFILE)
    run_image(src, tmp_path / "out.png")
    name, _, rest = png_chunks((tmp_path / "out.png").read_bytes())["iCCP"][0].partition(b"\x00")
    assert zlib.decompress(rest[1:]) == PROFILE and livesharp_warnings == []
    run_image(src, tmp_path / "out.tiff")
    assert livesharp_warnings == ["scan.tiff: its colour profile (ICC) cannot be stored in .tiff by livesharp and is dropped: colours may look different; "
                                  "write .png or .jpg to keep it"]


def test_a_pngs_gamma_and_primaries_are_kept_in_png_or_named(tmp_path, livesharp_warnings):
    """gAMA and cHRM say how a PNG's numbers map to colours; they were dropped in silence."""
    import cv2

    from livesharp.pipeline import with_png_chunks

    colour = [(b"gAMA", (100000).to_bytes(4, "big")), (b"cHRM", bytes(range(32)))]  # gamma 1.0
    src = tmp_path / "linear.png"
    src.write_bytes(with_png_chunks(cv2.imencode(".png", photo())[1].tobytes(), colour))
    run_image(src, tmp_path / "out.png")
    chunks = png_chunks((tmp_path / "out.png").read_bytes())
    assert (chunks["gAMA"], chunks["cHRM"]) == ([colour[0][1]], [colour[1][1]]) and livesharp_warnings == []
    run_image(src, tmp_path / "out.jpg")
    assert livesharp_warnings == ["linear.png: its gamma and colour primaries (PNG gAMA/cHRM) cannot be stored in .jpg and are dropped: "
                                  "colours may look different; write .png to keep them"]


def test_a_profile_for_other_pixels_than_the_outputs_is_not_copied(tmp_path, livesharp_warnings):
    """A grey+alpha PNG is written RGBA: its grey profile on RGB pixels made a PNG that libpng
    rejects ("Gray color space not permitted on RGB PNG")."""
    import numpy as np
    from PIL import Image

    grey = PROFILE[:16] + b"GRAY" + PROFILE[20:]
    src = tmp_path / "grey.png"
    Image.fromarray(np.dstack([photo()[..., 0], np.full(photo().shape[:2], 200, np.uint8)]), "LA").save(src, icc_profile=grey)
    run_image(src, tmp_path / "out.png")
    assert "iCCP" not in png_chunks((tmp_path / "out.png").read_bytes())
    assert livesharp_warnings == ["grey.png: its colour profile (ICC) is for GRAY pixels and the output's are RGB: it is dropped, colours may look different"]


def test_a_tiff_that_states_no_resolution_is_not_given_one(tmp_path, livesharp_warnings):
    """Pillow reads such a TIFF as 1 dpi, which was written into the output as if stated."""
    from PIL import Image

    src = tmp_path / "plain.tiff"
    Image.fromarray(photo()).save(src, "TIFF")
    for into in (".png", ".jpg", ".tiff"):
        run_image(src, tmp_path / f"out{into}")
        with Image.open(tmp_path / f"out{into}") as im:
            assert (282 not in im.tag_v2) if into == ".tiff" else ("dpi" not in im.info), into  # 282: XResolution
    run_image(src, tmp_path / "out.webp")
    assert livesharp_warnings == []


def test_a_full_disk_while_writing_an_image_is_one_line(tmp_path, monkeypatch):
    """A traceback came out when the disk filled as the tagged picture was written. The full
    disk is stood in for (a real one needs a mount): the write raises ENOSPC as the OS would."""
    import errno
    import pathlib

    from livesharp.errors import LivesharpError

    real = pathlib.Path.write_bytes

    def full(self, data):
        if self.name.startswith("."):  # the temp file beside the output, not the test's own files
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    from PIL import Image

    src = tmp_path / "scan.png"
    Image.fromarray(photo()).save(src, "PNG", dpi=(300, 300))
    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    with pytest.raises(LivesharpError, match="out.png: could not write the image \\(No space left on device\\)"):
        run_image(src, tmp_path / "out.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.png"]


@pytest.mark.parametrize("name", ["anim.gif", "anim.png", "pages.tiff"])
def test_only_the_first_of_several_frames_or_pages_is_sharpened_and_said(tmp_path, livesharp_warnings, name):
    import numpy as np
    from PIL import Image

    frames = [Image.fromarray(photo(32, 32) // (i + 1)) for i in range(3)]
    src = tmp_path / name
    frames[0].save(src, save_all=True, append_images=frames[1:], **({} if name.endswith("tiff") else {"duration": 100, "loop": 0}))
    run_image(src, tmp_path / "out.png")
    what = "pages" if name.endswith("tiff") else "frames"
    assert [w for w in livesharp_warnings if what in w] == [f"{name} has 3 {what}: only the first is sharpened"
                                                            + ("" if what == "pages" else "; livesharp file sharpens every frame into a video")]


def test_a_torch_that_cannot_load_does_not_stop_the_shipped_graph(tmp_path):
    """Cause 12: torch installed but unable to load (here a stand-in package that fails as a
    1.5 GB address-space limit makes libtorch fail) must not break a run that needs no torch.
    The shipped checkpoint is saved here in torch's legacy format, which only torch reads, so
    torch is asked for it (as where a GPU driver is installed) and the graph runs without it."""
    import shutil
    import subprocess
    import sys

    import cv2
    import numpy as np
    import torch

    from livesharp import settings

    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise OSError("libtorch_cpu.so: failed to map segment from shared object")\n')
    models = tmp_path / "models"
    models.mkdir()
    torch.save(torch.load(settings.shipped_weights("tiny"), weights_only=True), models / "livesharp-tiny.pt", _use_new_zipfile_serialization=False)
    shutil.copy(settings.shipped_graph("tiny"), models)
    cv2.imwrite(str(tmp_path / "in.png"), np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "LIVESHARP_CACHE": str(tmp_path / "cache"), "LIVESHARP_MODELS": str(models)}
    r = subprocess.run([sys.executable, "-m", "livesharp", "image", str(tmp_path / "in.png"), str(tmp_path / "out.png")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "torch is installed but does not load (libtorch_cpu.so" in r.stderr
    assert cv2.imread(str(tmp_path / "out.png")).shape == (48, 64, 3)


# Sharpens through the CLI entry point, then prints every torch module the process imported.
TORCH_MODULES_AFTER = """
import sys
from livesharp.cli import cli
try:
    cli(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
sys.exit(code)
"""


@pytest.mark.parametrize("args", [["image", "in.png", "out.png"], ["file", "in.mp4", "out.mp4", "--device", "cpu"]])
def test_the_shipped_model_on_the_cpu_never_imports_torch(tmp_path, video, args):
    """Cause 12: torch is installed here, and the shipped graph needs none of it; importing it
    only to compare digests broke runs where torch cannot load (a 1.5 GB address-space limit)."""
    import shutil
    import subprocess
    import sys

    import cv2

    from livesharp.engine import gpu_may_be_here
    from train.ship import demo_frame

    if "--device" not in args and gpu_may_be_here():
        pytest.skip("--device auto may choose CUDA here, which is torch's to run")
    cv2.imwrite(str(tmp_path / "in.png"), demo_frame()[:96, :128])
    shutil.copy(video, tmp_path / "in.mp4")
    r = subprocess.run([sys.executable, "-c", TORCH_MODULES_AFTER, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "LIVESHARP_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]" and (tmp_path / args[2]).is_file()
    assert not list((tmp_path / "cache").glob("*.onnx"))  # the shipped graph ran, not an export of the checkpoint


def test_where_a_gpu_driver_is_installed_auto_still_asks_torch_for_cuda(tmp_path, monkeypatch):
    """The other side of cause 12: no torch for the CPU must not cost CUDA users their GPU."""
    from livesharp import engine

    monkeypatch.setenv("LIVESHARP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(engine, "gpu_may_be_here", lambda: True)
    with engine.Sharpener("tiny") as s:
        assert s.net is not None  # loaded for torch, which runs it where it sees a GPU
    monkeypatch.setattr(engine, "gpu_may_be_here", lambda: False)
    with engine.Sharpener("tiny") as s:
        assert s.net is None and s.device == "cpu"


def test_a_checkpoints_digest_is_read_without_torch_as_torch_computes_it(tmp_path, random_student):
    """What lets the shipped graph run without torch: the digest its metadata records, computed
    from the checkpoint file alone. A file the reader does not follow gives None (torch decides)."""
    import torch

    from livesharp.export import model_digest
    from livesharp.graph import checkpoint_digest, read_graph
    from livesharp.model import save_student
    from livesharp.settings import shipped_graph, shipped_weights

    net = random_student(seed=3)
    save_student(net, tmp_path / "mine.pt", step=7, note="extra keys are read too")
    assert checkpoint_digest(tmp_path / "mine.pt") == model_digest(net)
    assert checkpoint_digest(shipped_weights("tiny")) == read_graph(shipped_graph("tiny")).digest
    torch.save({"model": net.state_dict(), "model_args": {}}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really")
    assert checkpoint_digest(tmp_path / "legacy.pt") is None and checkpoint_digest(tmp_path / "junk.pt") is None


def write_graph(path, inputs, output=("uint8", 4), **meta):
    """An ONNX graph with the shipped graph's livesharp metadata (``meta`` replacing some) and
    the given interface: ``inputs`` as (name, element type, axes), each node an identity or a cast."""
    import onnx
    from onnx import TensorProto, helper

    from livesharp.graph import onnx_metadata
    from livesharp.settings import shipped_graph

    kind = {"uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT}
    dims = lambda n: ["n", "h", "w", 3][-n:] if n > 1 else [1]  # noqa: E731
    values = [helper.make_tensor_value_info(name, kind[t], dims(n)) for name, t, n in inputs]
    out = helper.make_tensor_value_info("output", kind[output[0]], dims(output[1]))
    node = helper.make_node("Cast", [inputs[0][0]], ["output"], to=kind[output[0]])
    model = helper.make_model(helper.make_graph([node], "g", values, [out]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {**onnx_metadata(shipped_graph("tiny")), **meta})
    onnx.save(model, str(path))
    return path


FRAMES, STRENGTH = ("input", "uint8", 4), ("strength", "float32", 1)


@pytest.mark.parametrize("inputs, output, words", [
    ([("frames", "uint8", 4), STRENGTH], ("uint8", 4), "takes frames (4-axis uint8), strength (1-axis float32) and gives 4-axis uint8"),
    ([("input", "uint8", 3), STRENGTH], ("uint8", 3), "takes input (3-axis uint8), strength (1-axis float32) and gives 3-axis uint8"),
    ([("input", "float32", 4), STRENGTH], ("float32", 4), "takes input (4-axis float32), strength"),
    ([FRAMES], ("uint8", 4), "takes input (4-axis uint8) and gives"),
    ([FRAMES, STRENGTH], ("float32", 4), "and gives 4-axis float32, where"),
])
@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_a_graph_with_livesharp_metadata_but_another_interface_is_one_line(tmp_path, inputs, output, words, backend):
    """Cause 11: the runtimes met such a graph with a traceback, or ran it and wrote garbage."""
    import cv2
    import numpy as np

    graph = write_graph(tmp_path / "other.onnx", inputs, output)
    cv2.imwrite(str(tmp_path / "in.png"), np.zeros((40, 48, 3), np.uint8))
    r = CliRunner().invoke(cli, ["image", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--model", str(graph), "--backend", backend])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    line = r.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"error: {graph}: carries livesharp metadata but") and words in line
    assert "where livesharp's graphs take input (4-axis uint8), strength (1-axis float32) and give one 4-axis uint8" in line
    assert line.endswith("export one with: livesharp export MODEL other.onnx --io uint8") and not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("multiple", ["32.5", "abc", "0", "-32", ""])
def test_a_graph_whose_metadata_gives_no_whole_multiple_is_one_line(tmp_path, multiple):
    import cv2
    import numpy as np

    graph = write_graph(tmp_path / "odd.onnx", [FRAMES, STRENGTH], livesharp_multiple=multiple)
    cv2.imwrite(str(tmp_path / "in.png"), np.zeros((40, 48, 3), np.uint8))
    r = CliRunner().invoke(cli, ["image", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--model", str(graph)])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.strip() == (f"error: {graph}: its metadata gives the side multiple as {multiple!r}, not a whole number of pixels; "
                                f"export one with: livesharp export MODEL odd.onnx --io uint8")


def local_student(random_student):
    """A random student without its frame-wide averages (channel attention made a constant 1,
    no zero-mean residual): each output pixel then depends on nearby pixels only, and changes
    pictures by tens of grey levels, so a tile off the network's grid would show at once."""
    import dataclasses

    import torch

    from livesharp.model import Student

    net = random_student(seed=0)
    local = Student(dataclasses.replace(net.cfg, zero_mean=False))
    local.load_state_dict(net.state_dict())
    with torch.no_grad():
        for block in local.modules():
            if hasattr(block, "sca"):
                block.sca.weight.zero_()
                block.sca.bias.fill_(1.0)
    return local.eval()


def sharpen_image(src, dst, sharpener, tile):
    """``process_image`` with ``tile``, and the largest side the runner was given."""
    import cv2

    from livesharp.pipeline import process_image

    run, sides = sharpener.runner.run, []
    sharpener.runner.run = lambda frames, strength: sides.append(max(frames[0].shape[:2])) or run(frames, strength)
    try:
        process_image(src, dst, sharpener=sharpener, tile=tile)
    finally:
        sharpener.runner.run = run
    return cv2.imread(str(dst)).astype(int), max(sides)


def test_a_large_photo_is_computed_in_tiles_that_reproduce_a_local_network(tmp_path, random_student):
    """Cause 13: the whole photo went through the network at once (48 MP: 3.1 GB). Tiles on the
    network's 32-pixel grid, cross-faded over 128 pixels, give what the whole frame gives to
    within a rounding (tiles off the grid differed by up to 255 grey levels)."""
    import cv2

    from livesharp.engine import Sharpener
    from train.ship import demo_frame

    cv2.imwrite(str(tmp_path / "in.png"), cv2.cvtColor(demo_frame(), cv2.COLOR_RGB2BGR))  # 1280x720, real footage
    with Sharpener(local_student(random_student), device="cpu", precision="fp32") as s:  # the CPU runtime users get
        whole, side = sharpen_image(tmp_path / "in.png", tmp_path / "whole.png", s, tile=4096)
        tiled, tile_side = sharpen_image(tmp_path / "in.png", tmp_path / "tiled.png", s, tile=512)
    assert side == 1280 and tile_side <= 512
    assert abs(whole - cv2.imread(str(tmp_path / "in.png"))).mean() > 10  # the network does change the picture
    assert abs(tiled - whole).max() <= 1 and (tiled != whole).mean() < 1e-4


def test_the_shipped_model_in_tiles_stays_close_to_the_whole_frame_and_shows_no_seams(tmp_path):
    """The shipped tiny averages over the frame it is given (channel attention, zero-mean
    residual), so a tile's averages are not the frame's and tiled output cannot equal whole
    output; measured here on real footage in 512-pixel tiles: mean 0.16 grey levels, 2 % of
    values off by more than one, and no more near seams than elsewhere."""
    import cv2
    import numpy as np

    from livesharp.engine import Sharpener
    from livesharp.settings import IMAGE_OVERLAP
    from livesharp.tiling import tile_spans
    from train.ship import demo_frame

    cv2.imwrite(str(tmp_path / "in.png"), cv2.cvtColor(demo_frame(), cv2.COLOR_RGB2BGR))
    with Sharpener("tiny", device="cpu", precision="fp32") as s:  # fp32: auto may time int8 faster at one size only
        whole, _ = sharpen_image(tmp_path / "in.png", tmp_path / "whole.png", s, tile=4096)
        tiled, side = sharpen_image(tmp_path / "in.png", tmp_path / "tiled.png", s, tile=512)
    off = abs(tiled - whole).max(2)
    seams = np.zeros(off.shape, bool)  # the cross-faded bands
    for axis in (0, 1):
        for *_, seam in tile_spans(off.shape[axis], 512, IMAGE_OVERLAP, s.multiple)[:-1]:
            seams[(slice(None),) * axis + (slice(seam - IMAGE_OVERLAP // 2, seam + IMAGE_OVERLAP // 2),)] = True
    assert side <= 512 and abs(tiled - whole).mean() < 0.25 and (abs(tiled - whole) > 1).mean() < 0.03
    assert off[seams].mean() < 1.5 * off[~seams].mean()


# Sharpens a small picture (every library loaded, the runtime's threads started, a graph
# compiled), then limits the address space to what the process holds plus HEADROOM, as
# ``ulimit -v`` does, and sharpens the large one: its network then cannot be allocated.
UNDER_AN_ADDRESS_SPACE_LIMIT = """
import re, resource, sys
from pathlib import Path
from livesharp.cli import cli

def run(*args):
    try:
        cli([*args, "--device", "cpu"])
    except SystemExit as e:
        return e.code

small, large, out, headroom = sys.argv[1:]
assert run("image", small, "small_out.png") == 0
held = int(re.search(r"VmSize:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (held + int(headroom), resource.getrlimit(resource.RLIMIT_AS)[1]))
sys.exit(run("image", large, out))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the address space the process holds from /proc")
def test_a_picture_the_memory_cannot_hold_is_one_line_and_leaves_no_output(tmp_path):
    """Out of memory (here a real one: ``ulimit -v``, as in issue 32 causes 12 and 13) was
    OpenVINO's "Failed to allocate" or "can't alloc", or numpy's MemoryError, as a traceback.
    A 2048-pixel square is computed whole, so the network needs a few hundred MB at once: 200
    MB more than the process holds is far from enough, and enough for the picture itself."""
    import subprocess
    import sys

    import cv2

    cv2.imwrite(str(tmp_path / "small.png"), photo(64, 96))
    cv2.imwrite(str(tmp_path / "large.png"), cv2.resize(photo(256, 256), (2048, 2048)))
    r = subprocess.run([sys.executable, "-c", UNDER_AN_ADDRESS_SPACE_LIMIT, "small.png", "large.png", "out.png", str(200_000_000)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "LIVESHARP_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.fullmatch(r"error: not enough memory to sharpen this 4\.2 MP picture \(this process may take \d+\.\d GB of address space, "
                        r"ulimit -v\): raise that limit, or scale it down first", r.stderr.splitlines()[-1]), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "large.png", "small.png", "small_out.png"]  # no output, no partial one


def insufficient_memory(*_):
    """What OpenCV raises when it cannot allocate (its own error type), as the 48 MP photo's
    decoding raised it under a 0.9 GB limit."""
    import cv2

    raise cv2.error("OpenCV(4.12.0) /io/opencv/modules/core/src/alloc.cpp:73: error: (-4:Insufficient memory) "
                    "Failed to allocate 144000000 bytes in function 'OutOfMemoryError'\n")


def array_too_large(*_):
    import numpy as np

    return np.empty(1 << 62, np.uint8)  # numpy's own MemoryError, as tiling's float rows raised it under 1.8 GB


@pytest.mark.parametrize("where, fail", [("_read_image", insufficient_memory), ("tiled", array_too_large)])
def test_memory_that_runs_out_outside_the_runtime_is_one_line_naming_the_picture(tmp_path, monkeypatch, where, fail):
    """Under a limit the same photo runs out wherever its size first meets it: decoding,
    tiling or the network. Each is the one line, naming the picture's size."""
    import cv2

    from livesharp import pipeline

    cv2.imwrite(str(tmp_path / "in.png"), cv2.resize(photo(), (2000, 1500)))
    monkeypatch.setattr(pipeline, where, fail)
    r = CliRunner().invoke(cli, ["image", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--model", "unsharp"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert re.fullmatch(r"error: not enough memory to sharpen this 3\.0 MP picture \(.*\): .*, or scale it down first", r.output.strip()), r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


class FailingRunner:
    """Stands for a runtime whose computation raises ``error``."""

    name, min_side = "openvino", 1

    def __init__(self, error):
        self.error = error

    def infer(self, frames, strength):
        raise self.error


@pytest.mark.parametrize("message", [
    "Exception from src/inference/src/cpp/core.cpp:117:\nException from src/inference/src/dev/plugin.cpp:54:\n"
    "Check 'ptr' failed at src/plugins/intel_cpu/src/cpu_memory.cpp:257:\nFailed to allocate 111366176 bytes of memory\n",  # OpenVINO
    "Exception from src/inference/src/cpp/core.cpp:117:\nException from src/inference/src/dev/plugin.cpp:54:\ncan't alloc\n",  # OpenVINO compiling
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. Name:'/enc/Conv' "
    "Status Message: Failed to allocate memory for requested buffer of size 111366176",  # ONNX Runtime
    "DefaultCPUAllocator: can't allocate memory: you tried to allocate 111366176 bytes. Error code 12 (Cannot allocate memory)",  # torch
])
def test_a_runtimes_allocation_failure_is_one_line_naming_the_frames(message):
    """The runtimes' own words for memory that ran out become ``OutOfMemory``, whichever runs."""
    from livesharp.errors import OutOfMemory
    from livesharp.runtimes import GraphRunner

    runner = type("Runner", (FailingRunner, GraphRunner), {})(RuntimeError(message))
    frames = [photo(48, 64)]
    with pytest.raises(OutOfMemory, match=r"^not enough memory to compute 64x48 frames with openvino \(.*\): .*, or give it smaller frames$"):
        runner.run(frames)


@pytest.mark.parametrize("message", [
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which 1.20 GiB is free.",  # torch
    "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported at some other API call",  # a library torch calls
])
def test_a_gpu_that_runs_out_of_memory_is_one_line_naming_the_fixes(message):
    """No GPU here: a runner raises the words torch uses when a GPU's memory runs out. The line
    names the GPU, not the system's free memory, and the ways out."""
    from livesharp.errors import OutOfMemory
    from livesharp.runtimes import GraphRunner

    runner = type("Runner", (FailingRunner, GraphRunner), {"name": "torch"})(RuntimeError(message))
    with pytest.raises(OutOfMemory, match=r"^not enough GPU memory to compute 64x48 frames with torch: close other programs that use "
                                          r"the GPU, give it smaller frames \(with file, fewer at a time: --batch 1\), or run on the CPU \(--device cpu\)$"):
        runner.run([photo(48, 64)])


def test_a_runtimes_other_errors_are_not_called_memory():
    """Narrowly: a runtime's error that is not about memory stays what it was."""
    from livesharp.runtimes import GraphRunner

    error = RuntimeError("Exception from src/inference/src/cpp/infer_request.cpp:223:\nCan't set the input tensor: shape mismatch")
    runner = type("Runner", (FailingRunner, GraphRunner), {})(error)
    with pytest.raises(RuntimeError) as raised:
        runner.run([photo(48, 64)])
    assert raised.value is error


def test_memory_that_runs_out_in_a_video_is_one_line(video, tmp_path, monkeypatch):
    """numpy's MemoryError where no step names what it was doing: the CLI's one line still."""
    import numpy as np

    from livesharp.engine import Sharpener

    monkeypatch.setattr(Sharpener, "sharpen_batch", lambda self, frames, strength=None: np.empty(1 << 62, np.uint8))  # a real MemoryError
    r = CliRunner().invoke(cli, ["file", str(video), str(tmp_path / "out.mp4"), "--model", "unsharp", "--device", "cpu"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert re.fullmatch(r"error: not enough memory to go on \(.*\): .*, or give livesharp smaller pictures or videos", r.output.strip()), r.output
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_a_cameras_telemetry_track_is_copied_or_named_and_chapters_kept(tmp_path, livesharp_warnings, suffix):
    """FFmpeg sets aside every MOV data track (GoPro's GPMF telemetry here, 'gpmd'), not only the
    chapter-title track: the telemetry was dropped without a word. MP4 and MOV hold it."""
    import av

    (tmp_path / "gpmf.bin").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "chapters.txt").write_text(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=500\ntitle=One\n"
                                           "[CHAPTER]\nTIMEBASE=1/1000\nSTART=500\nEND=1000\ntitle=Two\n")
    src = tmp_path / "gopro.mov"  # (the system ffmpeg writes gpmd into MOV only)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=1", "-f", "data", "-i", str(tmp_path / "gpmf.bin"),
           "-i", str(tmp_path / "chapters.txt"), "-map", "0", "-map", "1", "-map_metadata", "2", "-map_chapters", "2",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:d", "copy", "-tag:d", "gpmd", "-metadata:s:d:0", "handler_name=GoPro MET", str(src))
    with av.open(str(src)) as c:
        assert [(s.type, s.discard >= 48) for s in c.streams] == [("video", False), ("data", True), ("data", True)]  # telemetry, chapter titles
    out = tmp_path / f"out{suffix}"
    run_file(src, out)

    def telemetry(path):
        with av.open(str(path)) as c:
            ds = [s for s in c.streams if s.type == "data" and s.metadata.get("handler_name") == "GoPro MET"]
            for s in ds:
                s.discard = 0
            return b"".join(bytes(p) for p in c.demux(*ds) if p.size) if ds else None

    if suffix == ".mkv":
        assert livesharp_warnings == ["not copied: data stream 1 (unknown codec): .mkv cannot hold it; write .mp4 or .mov to keep it"]
    else:
        kept = telemetry(src)
        assert kept and kept in (tmp_path / "gpmf.bin").read_bytes()  # the case is what it says
        assert livesharp_warnings == [] and telemetry(out) == kept
    with av.open(str(out)) as c:
        assert [ch["metadata"].get("title") for ch in c.chapters()] == ["One", "Two"]


def test_a_run_on_openvino_does_not_report_to_openvino_telemetry(tmp_path):
    """``import openvino`` sends a usage event to Google Analytics (unless the user opted out),
    from a process forked off a thread: the suite once hung at exit in such a child. A run of
    livesharp leaves no trace of it in the user's home (the client id and counts it keeps)."""
    import subprocess
    import sys

    import cv2

    cv2.imwrite(str(tmp_path / "in.png"), photo())
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "LIVESHARP_CACHE": str(tmp_path / "cache")}
    env.pop("CI", None)  # OpenVINO stays quiet where CI=true; users' machines do not set it
    for args in (["image", "in.png", "out.png", "--backend", "openvino"], ["export", "tiny", "tiny.xml"]):
        r = subprocess.run([sys.executable, "-m", "livesharp", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "out.png").is_file() and (tmp_path / "tiny.xml").is_file()
    assert list(home.rglob("*")) == []


def test_a_phones_location_make_and_model_are_kept_in_mov_and_mp4(tmp_path, livesharp_warnings):
    """An iPhone's clip keeps these as QuickTime mdta keys, which the MOV/MP4 muxer wrote only
    when asked: they vanished without a word."""
    import av

    src = tmp_path / "iphone.mov"
    apple = {"com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/", "com.apple.quicktime.make": "Apple",
             "com.apple.quicktime.model": "iPhone 15"}
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=0.5", "-c:v", "libx264", "-preset", "ultrafast",
           "-movflags", "use_metadata_tags", *[a for k, v in apple.items() for a in ("-metadata", f"{k}={v}")], str(src))
    for suffix in (".mov", ".mp4"):
        run_file(src, tmp_path / f"out{suffix}")
        with av.open(str(tmp_path / f"out{suffix}")) as c:
            assert {k: c.metadata.get(k) for k in apple} == apple, suffix
    assert livesharp_warnings == []


def test_tags_mp4_cannot_hold_are_named(tmp_path, livesharp_warnings):
    """Matroska holds any tag, MP4 only those it knows: a custom global tag and an audio
    track's title were dropped in silence going .mkv -> .mp4."""
    (tmp_path / "meta.txt").write_text(";FFMETADATA1\ntitle=Talk\nPROJECT=livesharp\n")
    src = tmp_path / "custom.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=0.5", "-f", "lavfi", "-i", "sine=duration=0.5", "-i", str(tmp_path / "meta.txt"),
           "-map", "0", "-map", "1", "-map_metadata", "2", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
           "-metadata:s:a:0", "title=Director commentary", str(src))
    run_file(src, tmp_path / "out.mkv")
    assert livesharp_warnings == []
    run_file(src, tmp_path / "out.mp4")
    assert livesharp_warnings == ["not copied: the tag PROJECT, the tag title of stream 1: .mp4 cannot hold them; write .mkv to keep them"]


def with_closed_captions(h264: bytes) -> bytes:
    """An Annex B H.264 stream with a CEA-608 caption pair (ATSC A53, in an SEI message) before
    each picture, as broadcast and many cameras' footage carries them."""
    def sei() -> bytes:
        cc = bytes([0xFC, 0x94, 0x20])  # field 1, one pair (a control code with parity)
        payload = b"\xb5\x00\x31GA94\x03" + bytes([0x41, 0xFF]) + cc + b"\xff"
        body, out, zeros = bytes([4, len(payload)]) + payload + b"\x80", bytearray(), 0
        for b in body:  # emulation prevention, as in any NAL unit
            if zeros >= 2 and b <= 3:
                out.append(3)
                zeros = 0
            out.append(b)
            zeros = zeros + 1 if b == 0 else 0
        return b"\x00\x00\x00\x01\x06" + bytes(out)

    units = [u.rstrip(b"\x00") for u in h264.split(b"\x00\x00\x01")]  # (a 4-byte start code leaves a 0 behind)
    out = bytearray()
    for u in filter(None, units):
        if u[0] & 0x1F in (1, 5):  # a slice: its picture's captions go just before it
            out += sei()
        out += b"\x00\x00\x00\x01" + u
    return bytes(out)


def test_closed_captions_inside_the_video_are_named(tmp_path, livesharp_warnings):
    """They were dropped without a word (the video is encoded again, and PyAV cannot hand
    them to the encoder)."""
    import av

    raw = tmp_path / "raw.h264"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=1", "-c:v", "libx264", "-preset", "ultrafast", "-bsf:v", "h264_mp4toannexb", str(raw))
    (tmp_path / "cc.h264").write_bytes(with_closed_captions(raw.read_bytes()))
    src = tmp_path / "cc.mp4"
    ffmpeg("-r", "10", "-i", str(tmp_path / "cc.h264"), "-c", "copy", str(src))
    with av.open(str(src)) as c:
        assert any("A53_CC" in str(k) for f in c.decode(video=0) for k in f.side_data.keys())  # the case is what it says
    run_file(src, tmp_path / "out.mp4")
    assert len(livesharp_warnings) == 1 and livesharp_warnings[0].startswith("not copied: cc.mp4's closed captions"), livesharp_warnings


def test_a_clip_made_to_start_later_is_said_to_start_at_0(tmp_path, livesharp_warnings):
    """A Matroska clip whose picture starts at 2 s came out starting at 0 without a word."""
    import av

    src = tmp_path / "placed.mkv"
    ffmpeg("-itsoffset", "2", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=1", "-c:v", "libx264", "-preset", "ultrafast", str(src))
    run_file(src, tmp_path / "out.mkv")
    assert livesharp_warnings == ["placed.mkv starts at 2.000 s: the output starts at 0, with every stream moved back by that much"]
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert next(c.decode(video=0)).time == 0


def test_an_undetermined_language_is_not_reported_lost(tmp_path, livesharp_warnings):
    """MP4 labels a track "und"; Matroska, where that is the default, does not write it."""
    src = tmp_path / "plain.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=1", "-f", "lavfi", "-i", "sine=duration=1",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(src))
    run_file(src, tmp_path / "out.mkv")
    assert livesharp_warnings == []


def test_an_h264_crop_off_the_alignment_is_kept(tmp_path):
    """A stream cropped 6 px from the left (the SPS's frame cropping, as cameras and encoders write
    for sizes that are not whole macroblocks) came out 6 px wider, with the cropped-away columns
    back in the picture: FFmpeg's decoder leaves an unaligned left crop undone unless asked."""
    import av

    src = tmp_path / "cropped.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=1", "-c:v", "libx264", "-preset", "ultrafast",
           "-bsf:v", "h264_metadata=crop_left=6:crop_right=2", str(src))
    reference = tmp_path / "reference.mkv"  # the picture the file shows, decoded by FFmpeg with the crop done
    ffmpeg("-flags", "unaligned", "-i", str(src), "-c:v", "ffv1", str(reference))
    out = tmp_path / "out.mkv"
    run_file(src, out, strength=0.0)
    with av.open(str(reference)) as c:
        want = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert want[0].shape == (64, 88, 3)  # the case is what it says
    assert len(got) == len(want) == 10 and got[0].shape == want[0].shape
    # The same columns: these frames differ by 4-5 grey levels after the encode, by 40 when 6 px apart.
    assert all(np.abs(g.astype(int) - w).mean() < 10 for g, w in zip(got, want))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_streams_keep_their_order(tmp_path, suffix):
    """Audio first, then the video, then a second audio track: the output put the video first, so
    a script's `-map 0:1` found the video where the input had its second track."""
    import av

    src = tmp_path / f"audio_first{suffix}"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=1",
           "-f", "lavfi", "-i", "sine=frequency=880:duration=1:sample_rate=22050", "-map", "0:a", "-map", "1:v", "-map", "2:a",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(src))
    out = tmp_path / f"out{suffix}"
    run_file(src, out)

    def kinds(path):
        with av.open(str(path)) as c:
            return [(s.type, s.codec_context.sample_rate if s.type == "audio" else None) for s in c.streams]

    assert kinds(src)[1][0] == "video"  # the case is what it says
    assert kinds(out) == kinds(src)
    with av.open(str(out)) as c:
        assert len([f for f in c.decode(video=0)]) == 10


def test_the_captions_hint_runs_as_printed_whatever_the_file_is_called(tmp_path, livesharp_warnings):
    """The ffmpeg command the warning gives put the name into a filter graph as it was: a comma,
    colon, bracket or quote in it ended the filter, and ffmpeg could not open the file."""
    import subprocess

    raw = tmp_path / "raw.h264"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=1", "-c:v", "libx264", "-preset", "ultrafast", "-bsf:v", "h264_mp4toannexb", str(raw))
    (tmp_path / "cc.h264").write_bytes(with_closed_captions(raw.read_bytes()))
    src = tmp_path / "it's a clip, take [2]; v1:final.mp4"
    ffmpeg("-r", "10", "-i", str(tmp_path / "cc.h264"), "-c", "copy", str(src))
    run_file(src, tmp_path / "out.mp4")
    command = livesharp_warnings[0].split("save them first: ", 1)[1]
    r = subprocess.run(["bash", "-c", command.replace("ffmpeg ", "ffmpeg -v error ", 1)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and (tmp_path / "captions.srt").exists(), (command, r.stderr)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_sound_an_edit_list_hides_stays_hidden(tmp_path, suffix):
    """An MP4 cut with `ffmpeg -ss 0.45 -c copy` keeps the cut audio, flagged for its edit list to
    hide; into .mkv, which has no such flag, the 0.47 s that was cut played again before the start."""
    import av

    src = tmp_path / "whole.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=3", "-f", "lavfi", "-i", "sine=duration=3",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-bf", "2", "-c:a", "aac", str(src))
    cut = tmp_path / "cut.mp4"
    ffmpeg("-ss", "0.45", "-i", str(src), "-c", "copy", str(cut))
    out = tmp_path / f"out{suffix}"
    run_file(cut, out)

    def samples(path):
        with av.open(str(path)) as c:
            return sum(f.samples for f in c.decode(audio=0))

    with av.open(str(cut)) as c:
        assert any(p.is_discard for p in c.demux(audio=0))  # the case is what it says
    # At most the decoder's priming packet and the part of the first one the edit list trims
    # (1,413 samples into .mkv, 32 ms); before, 0.47 s of the cut sound (about 20,700).
    assert abs(samples(out) - samples(cut)) <= 2048, (samples(out), samples(cut))


def test_side_by_side_mirrors_a_mirrored_video(tmp_path):
    """A selfie camera's left-right mirror (display matrix x -> -x) reads as a half turn by its
    angle alone: side by side, the panels came out upside down instead of mirrored."""
    import av

    src = tmp_path / "mirror.mp4"
    stored = np.zeros((64, 96, 3), np.uint8)
    stored[:32, :20] = 255  # top left as stored, so top right as shown
    with av.open(str(src), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt, s.options = 96, 64, "yuv420p", {"preset": "ultrafast"}
        s.set_display_matrix([-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30])
        for i in range(5):
            f = av.VideoFrame.from_ndarray(stored, format="rgb24")
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    dst = tmp_path / "sbs.mp4"
    run_file(src, dst, side_by_side=True, strength=0.0)
    with av.open(str(dst)) as c:
        panel = next(c.decode(video=0)).to_ndarray(format="rgb24")[:, :96, 0]
    rows, cols = np.nonzero(panel[20:] > 200)  # below the panel's label
    assert rows.max() + 20 < 32 and cols.min() >= 70, (rows.min(), rows.max(), cols.min(), cols.max())  # top right


def test_side_by_side_turns_the_pixel_shape_with_the_panels(tmp_path):
    """96x64 with pixels 4:3 wide, shown turned a quarter (64x128): side by side the panels were
    turned but their pixels kept 4:3, so each showed squashed (0.89:1 instead of 1:2)."""
    import av
    from fractions import Fraction

    flat = tmp_path / "flat.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=0.5", "-vf", "setsar=4/3", "-c:v", "libx264", "-preset", "ultrafast", str(flat))
    src = tmp_path / "turned.mp4"
    ffmpeg("-i", str(flat), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(src))
    dst = tmp_path / "sbs.mkv"
    run_file(src, dst, side_by_side=True)
    with av.open(str(dst)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (128, 96)
        assert v.sample_aspect_ratio == Fraction(3, 4)  # two panels of 64x96 pixels 3:4 wide: each shown 1:2, as the input


def test_labels_the_output_cannot_hold_are_named(tmp_path, livesharp_warnings):
    """MOV keeps no commentary or hearing-impaired flag, MP4 no title on the video, and MP4 no
    track without packets: all three went without a word (the language alone was named)."""
    src = tmp_path / "labelled.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=0.5", "-f", "lavfi", "-i", "sine=duration=0.5",
           "-map", "0", "-map", "1", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
           "-metadata:s:v:0", "title=Main cam", "-disposition:a:0", "comment+hearing_impaired", str(src))
    run_file(src, tmp_path / "out.mkv")
    assert livesharp_warnings == []
    run_file(src, tmp_path / "out.mov")
    assert livesharp_warnings == ["not copied: the tag title of stream 0, the label comment of stream 1, the label hearing_impaired of stream 1: "
                                  ".mov cannot hold them; write .mkv to keep them"]


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_audio_without_durations_keeps_its_last_packet(tmp_path, suffix):
    """Matroska stores no duration on ALAC's blocks; MP4 and MOV then dropped the last packet as
    empty: 48,000 samples came out 45,056 (61 ms gone), without a word."""
    import av

    src = tmp_path / "alac.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=1", "-f", "lavfi", "-i", "sine=duration=1:sample_rate=48000",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "alac", str(src))
    out = tmp_path / f"out{suffix}"
    run_file(src, out)

    def samples(path):
        with av.open(str(path)) as c:
            return sum(f.samples for f in c.decode(audio=0))

    assert samples(src) == 48000  # the case is what it says
    assert samples(out) == 48000
    assert audio_packets(out) == audio_packets(src)  # and every packet as it was


def test_a_track_without_packets_that_mp4_leaves_out_is_named_as_such(tmp_path, livesharp_warnings):
    """MP4 writes no track without samples: an empty French track in the middle vanished, and the
    warning said only that its language was lost (and, reading the next track in its place,
    would have blamed that one)."""
    src = tmp_path / "empty.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=1", "-f", "lavfi", "-i", "sine=duration=1",
           "-map", "0:v", "-map", "1:a", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
           "-frames:a:0", "0", "-metadata:s:a:0", "language=fra", "-metadata:s:a:1", "language=eng", str(src))
    run_file(src, tmp_path / "out.mkv")
    assert livesharp_warnings == []
    run_file(src, tmp_path / "out.mp4")
    assert livesharp_warnings == ["not copied: stream 1 itself (it holds no packets): .mp4 cannot hold them; write .mkv to keep them"]
