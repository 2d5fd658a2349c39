"""Video in and out with PyAV, in process: no ffmpeg shell strings.

Sources and sinks speak uint8 RGB frames (H, W, 3) plus their timestamps (``pts`` in the input
stream's ``time_base``), so timing survives the trip through the network untouched: frame count,
variable frame rate, duration and rotation all come out as they went in.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import logging
import os
import re
import shlex
import struct
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from .errors import LivesharpError

log = logging.getLogger("livesharp")

# Containers we can write H.264 into, by file suffix.
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# Still-image files by suffix (OpenCV reads and writes them all): what `image` writes, and what
# training lists as stills.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Frame:
    """One decoded picture and its timing in the source stream's time base."""

    rgb: np.ndarray
    pts: int
    duration: int | None = None


@dataclass(frozen=True)
class Colour:
    """How a video's YUV means RGB, as the H.273 codes FFmpeg uses: ``space`` the matrix
    (1 BT.709, 5/6 BT.601, 9 BT.2020), ``primaries`` and ``trc`` (2 = unspecified), ``range``
    1 limited (16-235) or 2 full (0-255)."""

    space: int
    primaries: int
    trc: int
    range: int

    @property
    def matrix(self) -> Colorspace:
        """The matrix as swscale names it."""
        return _SWS_MATRIX.get(self.space, Colorspace.ITU601)


_SWS_MATRIX = {1: Colorspace.ITU709, 4: Colorspace.FCC, 5: Colorspace.ITU601, 6: Colorspace.ITU601,
               7: Colorspace.SMPTE240M, 9: Colorspace.BT2020, 10: Colorspace.BT2020}
UNSPECIFIED = 2
# Each matrix's red and blue weights (Kr, Kb), by H.273 code, for the conversion done here.
_KR_KB = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114), 7: (0.212, 0.087),
          9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}


def rgb_to_yuv420p_full(rgb: np.ndarray, space: int) -> av.VideoFrame:
    """(H, W, 3) uint8 RGB, H and W even -> a full-range yuv420p frame, rounded to nearest.

    swscale's full-range path truncates chroma: neutral grey came out U = V = 127, and R and B
    were read back ~2 levels under G. Here luma is rounded per pixel and chroma is computed
    from the 2x2 mean of RGB (the conversion is linear), then rounded once.

    >>> f = rgb_to_yuv420p_full(np.full((4, 4, 3), 128, np.uint8), 1)
    >>> [bytes(p)[0] for p in f.planes]
    [128, 128, 128]
    """
    import cv2  # here: the CLI checks paths through this module before anything heavy loads

    kr, kb = _KR_KB.get(space, _KR_KB[6])
    kg = 1 - kr - kb
    luma = np.array([[kr, kg, kb]], np.float32)
    chroma = np.array([[-kr / (1 - kb) / 2, -kg / (1 - kb) / 2, 0.5, 128],
                       [0.5, -kg / (1 - kr) / 2, -kb / (1 - kr) / 2, 128]], np.float32)
    h, w = rgb.shape[:2]
    out = np.empty((h * 3 // 2, w), np.uint8)
    out[:h] = cv2.transform(rgb, luma)  # uint8 in, uint8 out: rounded and saturated
    mean = cv2.resize(rgb.astype(np.float32), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    uv = np.clip(cv2.transform(mean, chroma) + 0.5, 0, 255).astype(np.uint8)
    out[h : h + h // 4] = uv[..., 0].reshape(h // 4, w)
    out[h + h // 4 :] = uv[..., 1].reshape(h // 4, w)
    return av.VideoFrame.from_ndarray(out, format="yuv420p")


def colour_of(space: int, primaries: int, trc: int, range_: int, width: int, height: int, pix_fmt: str = "") -> Colour:
    """A stream's colour, with what players assume where it carries no tags: BT.709 for HD
    (wider than 1024 or taller than 576), BT.601 below that; limited range unless the pixel
    format says full (yuvj*).

    >>> colour_of(2, 2, 2, 0, 1920, 1080)
    Colour(space=1, primaries=1, trc=1, range=1)
    >>> colour_of(2, 2, 2, 0, 640, 480, "yuvj420p")
    Colour(space=6, primaries=2, trc=2, range=2)
    """
    if space in (0, UNSPECIFIED, 3):  # RGB formats, unspecified, reserved: no matrix is known
        if width > 1024 or height > 576:
            space = 1
            primaries = 1 if primaries == UNSPECIFIED else primaries
            trc = 1 if trc == UNSPECIFIED else trc
        else:
            space = 6
    if range_ not in (1, 2):
        range_ = 2 if pix_fmt.startswith("yuvj") else 1
    return Colour(space, primaries or UNSPECIFIED, trc or UNSPECIFIED, range_)


@dataclass
class VideoInfo:
    width: int
    height: int
    time_base: Fraction
    rate: Fraction
    frames: int  # declared or estimated count; 0 when the container cannot tell
    duration: float | None  # seconds
    audio: list = field(default_factory=list)  # input audio streams, copied untouched
    colour: Colour | None = None  # None: what players assume for the output's size
    subtitles: list = field(default_factory=list)  # input subtitle streams, copied untouched
    attachments: list = field(default_factory=list)  # input attachment streams (Matroska's fonts, cover images), copied whole
    pictures: list = field(default_factory=list)  # input attached pictures (cover art): video streams of one packet, copied
    data: list = field(default_factory=list)  # input data tracks (a camera's telemetry), copied where the output holds them
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (stream index, why) of streams not carried
    metadata: dict = field(default_factory=dict)  # the container's tags (title, artist, ...)
    hdr: dict = field(default_factory=dict)  # HDR10 side data of the first frame, by type: mastering display, content light
    chapters: list = field(default_factory=list)
    video_stream: object = None  # the input's video stream: its language, title, disposition
    sample_aspect_ratio: Fraction | None = None  # a pixel's width / height where not square (anamorphic PAL 64:45)


# Tags a muxer writes about itself or about the stream it stored: copied, they would describe
# the input's encoding, not the output's.
_OWN_TAGS = {"duration", "encoder", "major_brand", "minor_version", "compatible_brands", "bps",
             "number_of_frames", "number_of_bytes", "creation_time_utc", "alpha_mode", "vendor_id",
             "filename", "mimetype"}  # the last two: how Matroska stores cover art, not a label of it


def copyable_tags(tags) -> dict:
    """A stream's or container's tags less the ones its muxer and encoder made up about it (the
    video is encoded again: WebM's alpha_mode would claim a transparency H.264 does not carry)."""
    return {k: v for k, v in dict(tags).items() if k.lower() not in _OWN_TAGS and not k.lower().startswith("_statistics")}


def first_packets(path: Path, streams: list) -> dict[int, bytes]:
    """The first packet of each of ``streams`` of the file at ``path``, by stream index, read
    by opening the file again (a stream the demuxer sets aside, cover art the reader hands the
    writer too late for a header); {} where it cannot be (a pipe cannot be read twice)."""
    found: dict[int, bytes] = {}
    if not streams or not path.is_file():
        return found
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            picked = [c.streams[s.index] for s in streams]
            for s in picked:
                s.discard = 0  # read it, though the demuxer may set it aside
            c.seek(0)  # back to the start: opening read past the first samples
            for packet in c.demux(*picked):
                if packet.size and packet.stream.index not in found:
                    found[packet.stream.index] = bytes(packet)
                    if len(found) == len(picked):
                        break
    except (av.error.FFmpegError, OSError):
        pass
    return found


def chapter_track(path: Path, aside: list, chapters: list[dict]) -> int | None:
    """Which of ``aside`` (data tracks the demuxer sets aside) is MP4's chapter-title track: the
    one whose first sample is the first chapter's title, as a MOV text sample holds it (its
    length in 16 bits, then the text). None when none is."""
    if not chapters:
        return None
    title = str(chapters[0].get("metadata", {}).get("title", "")).encode()
    want = len(title).to_bytes(2, "big") + title
    return next((index for index, first in first_packets(path, aside).items() if first.startswith(want)), None)


def describe_stream(stream) -> str:
    """``subtitle stream 3 (subrip, deu)``: how a warning names a stream."""
    cc = stream.codec_context
    what = [cc.name if cc is not None and cc.name else "unknown codec"]
    if stream.type == "video" and cc is not None:
        what.append(f"{cc.width}x{cc.height}")
    language = stream.metadata.get("language")
    if language and language != "und":
        what.append(language)
    return f"{stream.type} stream {stream.index} ({', '.join(what)})"


def _cannot_hold(fmt: str, stream) -> str | None:
    """Why an output of format ``fmt`` cannot store ``stream`` as it is, or None when it can.
    Asked of the muxer itself, in memory, before any work is done: header, a packet, trailer."""
    out = av.open(io.BytesIO(), "w", format=fmt)
    try:
        copy = out.add_stream_from_template(stream)
        out.start_encoding()
        if stream.codec_context is not None and stream.codec_context.name.startswith("pcm_"):
            # MP4 refuses some PCM only in its trailer, once it has samples: give it silence
            # (96 bytes: whole samples of any layout). Other codecs' packets must be real ones.
            packet = av.Packet(bytes(96))
            packet.pts = packet.dts = 0
            packet.duration, packet.time_base, packet.stream = 1, copy.time_base, copy
            out.mux(packet)
    except (av.error.FFmpegError, ValueError, TypeError) as e:
        with contextlib.suppress(av.error.FFmpegError, ValueError):
            out.close()
        return getattr(e, "strerror", None) or str(e)
    try:  # some refuse only in the trailer (MP4 and 24-bit PCM)
        out.close()
    except (av.error.FFmpegError, ValueError) as e:
        return f"its muxer refuses {stream.codec_context.name if stream.codec_context is not None else 'it'}: {getattr(e, 'strerror', None) or e}"
    return None


@dataclass(frozen=True)
class CoverFile:
    """Cover art as a Matroska attachment (what ``VideoWriter`` writes for an attachment stream)."""

    index: int  # the input's attached-picture stream
    name: str
    mimetype: str
    data: bytes


def _cover_file(pic) -> CoverFile | None:
    """The attached picture ``pic`` (a JPEG or PNG) read whole from its file, as an attachment;
    None where it cannot be (a pipe cannot be read twice, another picture format)."""
    mimetype = pic.metadata.get("mimetype") or {"mjpeg": "image/jpeg", "png": "image/png"}.get(pic.codec_context.name)
    if mimetype not in ("image/jpeg", "image/png"):
        return None
    data = first_packets(Path(pic.container.name), [pic]).get(pic.index)
    name = pic.metadata.get("filename") or ("cover.jpg" if mimetype == "image/jpeg" else "cover.png")
    return CoverFile(pic.index, name, mimetype, data) if data else None


def fit_streams(info: VideoInfo, dst: Path) -> list[str]:
    """Keep in ``info`` only the streams the output ``dst`` can hold; return one warning per
    stream left out. Audio the output cannot hold is an error, before the work starts."""
    suffix = dst.suffix.lower()
    fmt = OUTPUT_FORMATS[suffix]

    def elsewhere(stream, order=(".mkv", ".mp4", ".mov")) -> list[str]:  # the outputs that hold it: not this one
        return [other for other in order if OUTPUT_FORMATS[other] != fmt and not _cannot_hold(OUTPUT_FORMATS[other], stream)]

    def held(streams, what, it: str) -> list:  # those the output holds; the others named, with where they fit
        kept = []
        for s in streams:
            if _cannot_hold(fmt, s):
                fits = elsewhere(s)
                hint = f"write {' or '.join(fits)} to keep {it}" if fits else f"no output livesharp writes can hold {it}"
                info.skipped.append((s.index, f"{describe_stream(s)}: {suffix} cannot hold {what(s)}; {hint}"))
            else:
                kept.append(s)
        return kept

    for a in info.audio:
        why = _cannot_hold(fmt, a)
        if why:
            fits = elsewhere(a, (".mkv", ".mov", ".mp4"))
            hint = f"use a {fits[0]} output" if fits else "convert the audio first (e.g. ffmpeg -i in -c:v copy -c:a aac fixed.mkv)"
            raise LivesharpError(f"audio codec {a.codec_context.name} cannot be copied into {suffix} ({why}); {hint}")
    info.subtitles = held(info.subtitles, lambda s: f"{s.codec_context.name} subtitles", "them")
    info.data = held(info.data, lambda s: "it", "it")  # a camera's telemetry: MP4 and MOV hold it, Matroska does not
    # Cover art is copied as cover art into MP4. Matroska's muxer would write it as a second
    # video track of one frame: it goes in as the attachment Matroska keeps cover art as (read
    # back as cover art). QuickTime's muxer leaves it out without an error.
    if fmt != "mp4":
        for pic in info.pictures:
            cover = _cover_file(pic) if fmt == "matroska" else None
            if cover is not None:
                info.attachments.append(cover)
            else:
                info.skipped.append((pic.index, f"{describe_stream(pic)}, an attached picture (cover art): {suffix} cannot hold it as one; write .mp4 or .mkv to keep it"))
        info.pictures = []
    if info.attachments and fmt != "matroska":  # the one output that stores attachments
        for a in info.attachments:
            info.skipped.append((a.index, f"attachment {a.name or a.index} ({a.mimetype or 'no type'}): {suffix} cannot hold attachments; write .mkv to keep it"))
        info.attachments = []
    lines = [f"not copied: {what}" for _, what in sorted(info.skipped)]
    v = info.video_stream
    pix = (v.codec_context.pix_fmt or "") if v is not None else ""
    name = Path(v.container.name).name if getattr(v, "container", None) is not None else "the input"
    # VP9 in WebM keeps its alpha beside the picture, flagged by a tag; the decoder leaves it out.
    vp9_alpha = v is not None and any(k.lower() == "alpha_mode" and str(t) == "1" for k, t in v.metadata.items())
    if re.match(r"(yuva|gbrap|ya\d|rgba|bgra|argb|abgr)", pix) or vp9_alpha:  # pixel formats that carry alpha
        lines.append(f"{name} has transparency (an alpha channel, {pix}{', VP9 alpha' if vp9_alpha else ''}) and H.264 cannot store it: it is dropped")
    finer = _finer_than_output(pix)
    if finer:
        lost = (["its finer steps of tone are not kept"] if "bit" in finer else []) + \
               (["its colour is stored at lower resolution"] if re.search(r"4:4:4|4:2:2|RGB", finer) else [])
        lines.append(f"{name} is {finer} ({pix}) and livesharp writes 8-bit 4:2:0 H.264: {' and '.join(lost)}")
    return lines


def _finer_than_output(pix: str) -> str | None:
    """What of a pixel format an 8-bit 4:2:0 output loses: its bit depth, its colour resolution.

    >>> _finer_than_output("yuv420p10le"), _finer_than_output("yuv444p"), _finer_than_output("yuvj420p")
    ('10-bit', '4:4:4', None)
    """
    try:
        f = av.VideoFormat(pix)
    except (ValueError, TypeError):
        return None
    what = []
    bits = max((c.bits for c in f.components), default=8)
    if bits > 8:
        what.append(f"{bits}-bit")
    if len(f.components) >= 3:
        full_width, full_height = f.chroma_width(64) == 64, f.chroma_height(64) == 64
        if f.is_rgb:
            what.append("RGB")
        elif full_width and full_height:
            what.append("4:4:4")
        elif full_height:
            what.append("4:2:2")
    return " ".join(what) or None


def check_input(path: Path, what: str = "video file") -> None:
    """Fail early, in one line, on an input that cannot be a readable file (``what``: a video
    file or a picture, as the error names it)."""
    if not path.exists():
        raise LivesharpError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise LivesharpError(f"{path}: is a directory, not a {what}")
    if not os.access(path, os.R_OK):
        raise LivesharpError(f"{path}: not readable; check its permissions")


def camera_file(camera: str) -> Path | None:
    """The video file ``--camera`` names (``sources.open_source`` plays it), or None for a camera (an index or a /dev/videoN).

    >>> camera_file("0"), camera_file("/dev/video2"), camera_file("clip.mp4")
    (None, None, PosixPath('clip.mp4'))
    """
    if camera.isdigit() or camera.startswith("/dev/video"):
        return None
    return Path(camera)


def check_output(src: Path | None, dst: Path, overwrite: bool, suffixes) -> None:
    """The output must not be the input, must not silently replace a file, and needs a writable folder.

    ``src`` None: no input file (a camera). ``suffixes`` None: any name (``cam --stats``)."""
    if dst.is_dir():  # first: a folder's name says nothing about a file type
        example = dst / ("sharp_" + src.name if src is not None else "stats.jsonl")
        raise LivesharpError(f"{dst}: is a directory; give an output file name such as {example}")
    if suffixes is not None and dst.name.lower() in suffixes:  # Path(".mp4").suffix is "": a hidden file, no type
        raise LivesharpError(f"{dst}: the name is only a suffix; give a name before it, such as {dst.with_name('sharp' + dst.name)}")
    if suffixes is not None and dst.suffix.lower() not in suffixes:
        raise LivesharpError(f"{dst.name}: unknown output type; end the name in {', '.join(suffixes)}")
    present = dst.exists() or dst.is_symlink()  # a link to nothing is a name taken all the same
    same = src is not None and (dst.resolve() == src.resolve() or (dst.exists() and src.exists() and os.path.samefile(src, dst)))
    if same:
        raise LivesharpError(f"{dst}: output is the input file; choose another output name (the input is never modified)")
    if dst.exists() and not dst.is_file():
        # A device, a pipe or a socket: the finished file would be renamed over it (as root, over /dev/null).
        raise LivesharpError(f"{dst}: not a regular file (a device, pipe or socket); give the name of a file to write")
    if present and not overwrite:
        what = f" (a symbolic link to {os.readlink(dst)}, which does not exist)" if dst.is_symlink() and not dst.exists() else ""
        raise LivesharpError(f"{dst}: already exists{what}; pass --overwrite to replace it, or choose another name")
    parent = dst.parent
    if not parent.is_dir():
        raise LivesharpError(f"{parent}: output folder does not exist; create it first (mkdir -p {parent})")
    try:  # os.access says yes to root everywhere; creating a file is the real test
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as e:
        raise LivesharpError(f"{parent}: cannot write in the output folder ({e.strerror}); choose another output folder") from None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """(type, data) of each whole chunk of a PNG, in order, up to where the file ends; the data
    a view into ``data``, not a copy (the picture's chunks are most of the file).

    >>> head = bytes.fromhex("89504e470d0a1a0a") + bytes.fromhex("0000000d49484452") + bytes(17)
    >>> [kind for kind, _ in png_chunks(head + bytes.fromhex("0000000049454e44ae426082"))], list(png_chunks(head[:30]))
    ([b'IHDR', b'IEND'], [])
    """
    i, n, view = len(PNG_SIGNATURE), len(data), memoryview(data)
    while i + 8 <= n:
        length, kind = int.from_bytes(data[i : i + 4], "big"), bytes(data[i + 4 : i + 8])
        if i + 12 + length > n:  # length, type, data, CRC: cut short inside this chunk
            return
        yield kind, view[i + 8 : i + 8 + length]
        i += 12 + length


def png_is_complete(data: bytes) -> bool:
    """Whether a PNG's chunks run whole up to its IEND chunk; a file cut short ends inside one."""
    if data[:8] != PNG_SIGNATURE:
        return True  # not a PNG: not ours to judge
    return any(kind == b"IEND" for kind, _ in png_chunks(data))


def jpeg_segments(data: bytes) -> Iterator[tuple[int, memoryview]]:
    """(marker, body) of each segment of a JPEG after its start-of-image, in order, up to its
    end-of-image (yielded with what follows it in the file as its body) or where the file ends;
    the body a view into ``data``. Walked marker by marker as libjpeg reads, so a thumbnail
    inside an APP segment, or bytes after the end (a motion photo's video), are not mistaken
    for markers.

    >>> [hex(m) for m, _ in jpeg_segments(bytes.fromhex("ffd8 ffe10004 abcd ffda0002 12ff0034 ffd9"))]
    ['0xe1', '0xda', '0xd9']
    """
    i, n, view = 2, len(data), memoryview(data)
    while i + 1 < n:
        if data[i] != 0xFF:  # stray bytes between segments: libjpeg skips them, and so do we
            i = data.find(b"\xff", i)
            if i < 0:
                return
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == 0xD9:
            yield marker, view[i + 2 :]
            return
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # no length
            i += 2
            continue
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if i + 3 >= n or end > n:  # cut short inside this segment
            return
        yield marker, view[i + 4 : end]
        i = end
        if marker == 0xDA:  # entropy-coded data: runs to the next marker that is not 0xFF00 or a restart
            while True:
                i = data.find(b"\xff", i)
                if i < 0 or i + 1 >= n:
                    return
                nxt = data[i + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    i += 1 if nxt == 0xFF else 2
                    continue
                break


def jpeg_is_complete(data: bytes) -> bool:
    """Whether a JPEG's markers run from start-of-image to end-of-image; a file cut short ends
    inside its scan data.

    >>> jpeg_is_complete(bytes.fromhex("ffd8 ffda0002 1234ff00 56ffd9"))
    True
    >>> jpeg_is_complete(bytes.fromhex("ffd8 ffda0002 1234ff00 56"))
    False
    >>> jpeg_is_complete(bytes.fromhex("ffd8 0000 ffda0002 12 ffd9"))  # stray bytes before a marker
    True
    """
    if data[:2] != b"\xff\xd8":
        return True  # not a JPEG: not ours to judge
    return any(marker == 0xD9 for marker, _ in jpeg_segments(data))


def _open_input(path: Path):
    check_input(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        if e.errno == errno.EINTR:  # Ctrl-C or SIGTERM while the open blocked (a FIFO nobody writes yet)
            raise KeyboardInterrupt from None
        raise LivesharpError(f"{path}: not a video file FFmpeg can read ({e.strerror or e}); check the file or re-export it") from None
    if not container.streams.video:
        container.close()
        raise LivesharpError(f"{path}: has no video stream; pass a video file")
    if container.format.name == "webp_pipe" and _is_animated_webp(path):
        container.close()
        raise LivesharpError(f"{path}: an animated WebP, which FFmpeg cannot decode; convert it first (e.g. magick {path.name} frames.gif, or to MP4)")
    return container


def _probe(path: Path) -> tuple[str, str] | None:
    """How FFmpeg reads ``path`` by its content, whatever its name: ("still", codec) through its
    image demuxers (png_pipe, jpeg_pipe, ..., image2), ("video", codec) through any other with a
    video stream; None when it reads no picture. A pipe or device is not probed: what is read
    from it is gone."""
    if not path.is_file():
        return None
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            formats = c.format.name.split(",")
            codec = c.streams.video[0].codec_context.name if c.streams.video else ""
    except (av.error.FFmpegError, OSError):
        return None
    # Text art (FFmpeg's bin, xbin, adf, idf and tty formats) is what it guesses any unknown
    # bytes to be, by their name or by default: no picture at all.
    if not codec or set(formats) & {"bin", "xbin", "adf", "idf", "tty"}:
        return None
    if "webp_pipe" in formats and _is_animated_webp(path):
        return "video", codec  # moving, though FFmpeg cannot decode it: VideoReader says so
    return ("still" if any(f == "image2" or f.endswith("_pipe") for f in formats) else "video"), codec


def refuse_still_image(path: Path) -> None:
    """A one-line ``LivesharpError`` when FFmpeg reads ``path`` as a still image: a video made
    of it would be one frame long. Anything else, unreadable files included, passes here and
    is judged by ``VideoReader``."""
    kind = _probe(path)
    if kind and kind[0] == "still":
        out = path.with_name(f"{path.stem}_sharp{path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else '.png'}")
        raise LivesharpError(f"{path}: a still image ({kind[1].upper()}), not a video; sharpen it with: livesharp image {path} {out}")


def refuse_video(path: Path) -> None:
    """A one-line ``LivesharpError`` when a file given as a picture is a video."""
    kind = _probe(path)
    if kind and kind[0] == "video":
        raise LivesharpError(f"{path}: a video ({kind[1].upper()}), not a still picture; sharpen it with: livesharp file {path} {path.stem}_sharp.mp4")


def _is_animated_webp(path: Path) -> bool:
    """Whether a WebP file has an animation chunk (FFmpeg's decoder reads still WebP only)."""
    with open(path, "rb") as f:
        head = f.read(64)
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:16] == b"VP8X" and bool(head[20] & 0x02)


def main_video(container):
    """The video stream to sharpen, chosen as FFmpeg chooses: never a cover picture (attached
    picture) while a real video exists, and among the rest the one FFmpeg finds best (more
    frames seen while probing, then the higher bit rate), not merely the first."""
    videos = list(container.streams.video)
    real = [v for v in videos if not v.disposition & av.stream.Disposition.attached_pic] or videos
    try:
        best = container.streams.best("video")
    except (av.error.FFmpegError, ValueError):
        best = None
    return best if best in real else real[0]


_HDR_SIDE_DATA = ("MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL")


def x264_hdr_params(hdr: dict) -> str:
    """HDR10 side data as libx264's options (it writes them as SEI messages): the mastering
    display's primaries and white point in 1/50000, its luminance in 1/10000 cd/m2, and the
    content light levels in cd/m2. Empty when there is none.

    >>> x264_hdr_params({"CONTENT_LIGHT_LEVEL": struct.pack("<2I", 1000, 400)})
    'cll=1000,400'
    """
    params = []
    md = hdr.get("MASTERING_DISPLAY_METADATA")
    if md and len(md) >= 88:
        r = struct.unpack("<20i2i", md[:88])
        q = [Fraction(r[2 * i], r[2 * i + 1]) if r[2 * i + 1] else Fraction(0) for i in range(10)]
        has_primaries, has_luminance = r[20], r[21]
        if has_primaries and has_luminance:
            c = [round(x * 50000) for x in q[:8]]  # R, G, B, white point: (x, y) each
            params.append(f"mastering-display=G({c[2]},{c[3]})B({c[4]},{c[5]})R({c[0]},{c[1]})WP({c[6]},{c[7]})"
                          f"L({round(q[9] * 10000)},{round(q[8] * 10000)})")
    cll = hdr.get("CONTENT_LIGHT_LEVEL")
    if cll and len(cll) >= 8:
        params.append("cll=%d,%d" % struct.unpack("<2I", cll[:8]))
    return ":".join(params)


def _pixel_aspect(v) -> Fraction | None:
    """A video stream's sample (pixel) aspect ratio, None when square or unknown."""
    sar = v.sample_aspect_ratio or v.codec_context.sample_aspect_ratio
    if not sar or sar.numerator <= 0 or sar.denominator <= 0 or sar == 1:
        return None
    return Fraction(sar)


def frame_side_data(frame: av.VideoFrame) -> dict[str, bytes]:
    """The frame's side data by type name (``DISPLAYMATRIX``, ``CONTENT_LIGHT_LEVEL``, ...).

    PyAV 18.1.1 made ``side_data`` a mapping whose iteration gives the types alone; before, it
    gave the entries: both are read here.
    """
    return {sd.type.name: bytes(sd) for sd in _side_data(frame)}


def _side_data(frame: av.VideoFrame) -> Iterator:
    for key in frame.side_data:
        yield frame.side_data[key] if isinstance(key, av.sidedata.sidedata.Type) else key


def has_side_data(frame: av.VideoFrame, name: str) -> bool:
    """Whether the frame carries side data of type ``name``, without copying any (per frame)."""
    return any(sd.type.name == name for sd in _side_data(frame))


def display_matrix(frame: av.VideoFrame) -> list[int] | None:
    """The frame's display matrix (rotation/flip) as 9 ints, or None when it has none."""
    matrix = frame_side_data(frame).get("DISPLAYMATRIX")
    return None if matrix is None else list(struct.unpack("<9i", matrix))


def captions_source(path: Path) -> str:
    r"""FFmpeg's input, for a shell command line, that reads the closed captions inside ``path``'s
    video: its name escaped for the option value, then for the filter graph, then for the shell
    (a comma, colon or quote in a file name would otherwise end the filter or the argument).

    >>> print(captions_source(Path("take 2, v1:final.mp4")))
    'movie=take 2\, v1\\:final.mp4[out0+subcc]'
    """
    value = re.sub(r"([\\':])", r"\\\1", str(path))
    graph = re.sub(r"([\\'\[\],;])", r"\\\1", value)
    return shlex.quote(f"movie={graph}[out0+subcc]")


class VideoReader:
    """Decode the first video stream of a file to RGB frames, with threading on.

    Audio and subtitle packets are not decoded: they are handed to ``on_packet`` in file order
    so the writer can copy them untouched.
    """

    def __init__(self, path: str | Path, quiet: bool = False):
        self.path, self.quiet = Path(path), quiet  # quiet: its warnings were given already (a looping file camera)
        self.container = _open_input(self.path)
        self.video = main_video(self.container)
        self.video.thread_type = "AUTO"
        # A picture cropped off the CPU's alignment on the left or top (an H.264 crop of 6 px)
        # comes out of FFmpeg's decoder with the crop undone unless unaligned planes are allowed.
        self.video.codec_context.options = {"flags": "unaligned"}
        v = self.video
        rate = v.average_rate or v.guessed_rate or Fraction(30)
        duration = None
        if v.duration is not None and v.time_base:
            duration = float(v.duration * v.time_base)
        elif self.container.duration:
            duration = self.container.duration / av.time_base
        frames = v.frames or (round(duration * rate) if duration else 0)
        cc = v.codec_context
        self.colour = colour_of(cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range, cc.width, cc.height, cc.pix_fmt or "")
        self.info = VideoInfo(
            width=v.codec_context.width,
            height=v.codec_context.height,
            time_base=v.time_base or Fraction(1, 90000),
            rate=Fraction(rate),
            frames=frames,
            duration=duration,
            audio=list(self.container.streams.audio),
            colour=self.colour,
            subtitles=list(self.container.streams.subtitles),
            metadata=copyable_tags(self.container.metadata),
            chapters=self.container.chapters(),
            video_stream=v,
            sample_aspect_ratio=_pixel_aspect(v),
        )
        # MP4's chapter-title track is the chapters, copied as such. The demuxer sets it aside,
        # and every other MOV data track too (GoPro's telemetry, a camera's motion): those are
        # content, copied (info.data) or named.
        titles = chapter_track(self.path, [s for s in self.container.streams if s.type == "data" and s.discard >= 48], self.info.chapters)
        for other in self.container.streams:
            if other is v or other.type in ("audio", "subtitle") or other.index == titles:
                continue
            # MP4/MOV's timecode track: its start is the video's timecode tag, copied with the
            # video's labels, from which the output's muxer writes it back (.mkv: as the tag).
            if other.type == "data" and other.metadata.get("timecode") and other.metadata.get("timecode") == v.metadata.get("timecode"):
                continue
            # A MOV/MP4 data track keeps its type (gpmd, camm) when copied into MP4 or MOV; one from
            # elsewhere (a transport stream's KLV) would come out under a made-up one, so is named.
            if other.type == "data" and "mov" in self.container.format.name.split(","):
                other.discard = 0  # read it, though the demuxer set it aside (it does so for every MOV data track)
                self.info.data.append(other)
                continue
            if other.type == "attachment" and other.data is not None:
                self.info.attachments.append(other)
                continue
            if other.type == "video" and av.stream.Disposition.attached_pic in other.disposition:
                self.info.pictures.append(other)
                continue
            why = "livesharp writes one video stream, the main one" if other.type == "video" else "it cannot be copied"
            self.info.skipped.append((other.index, f"{describe_stream(other)}: {why}"))
        # Whether the video's first packet is a keyframe, known once it is read: if not (a stream
        # cut mid-GOP), the frames before the first keyframe are lost, and the output starts at it.
        self.clean_start = True
        self.matrix: list[int] | None = None  # the display matrix (turns, mirrors), known once the first frame is decoded

    def frames(self, on_packet: Callable[[av.Packet], None] | None = None) -> Iterator[Frame]:
        v, tb = self.video, self.info.time_base
        step = max(1, round(1 / (self.info.rate * tb))) if self.info.rate else 1
        # Audio is always demuxed (cheap, never decoded): where it ends tells a video that is
        # shorter than its file from a file that was cut short.
        streams = [v, *self.info.audio, *self.info.subtitles, *self.info.pictures, *self.info.data]
        n, first_pts, last_pts = 0, None, None
        stored = 0  # video packets read: an edit list may hide some of their frames, but not the packets
        keyed, expected, seen = False, set(), set()  # pts of pictures stored and of those decoded
        interlaced = captions = False
        video_end = audio_end = None  # seconds on the file's clock
        # AVI stores no presentation times: the demuxer guesses each packet's from its place in
        # decode order, and with B-frames the decoder hands those guesses back out of order. The
        # time of the packet that completed each frame runs forward in display order (FFmpeg's
        # best-effort timestamp falls back to it): AVI's frames are timed by it, from the first
        # frame's own time, and those drained at the end one frame period apart.
        by_decode = self.container.format.name == "avi"
        offset = None  # first frame's pts less its decode time, for by_decode

        def damaged(why: str) -> LivesharpError:
            at = f"{float((last_pts - first_pts) * tb):.2f} s" if last_pts is not None else "the start"
            return LivesharpError(
                f"{self.path}: damaged video data after frame {n} (at {at}): {why}; "
                f"repair or trim the file first (e.g. ffmpeg -i in -c copy fixed.mkv)"
            )

        try:
            for packet in self.container.demux(streams):
                if packet.stream is not v:
                    # The demuxer's end-of-stream packets carry nothing; an attached picture's one
                    # packet has no time at all.
                    if packet.dts is not None or (packet.size and packet.stream in self.info.pictures):
                        if packet.pts is not None and packet.stream.type == "audio":
                            end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                            audio_end = end if audio_end is None else max(audio_end, end)
                        if on_packet:
                            on_packet(packet)
                    continue
                if packet.size or packet.dts is not None:  # not the demuxer's empty end-of-stream packet; AVI's empty "dropped frame" chunks count
                    if stored == 0:
                        self.clean_start = packet.is_keyframe
                    stored += 1
                # Pictures the decoder must give back: stored, shown (not hidden by an edit
                # list), from the first keyframe on (before it, a stream cut mid-GOP has none).
                keyed = keyed or (packet.is_keyframe and packet.size > 0)
                if keyed and packet.size and packet.pts is not None and not packet.is_discard:
                    expected.add(packet.pts)
                for frame in packet.decode():
                    # A decoder that meets bad data often hides it instead of failing: it fills
                    # the broken part in from other frames and only flags the frame. Writing
                    # that out would pass a damaged picture off as a good one.
                    if frame.is_corrupt:
                        raise damaged("the decoder had to conceal broken picture data")
                    if n == 0:
                        self.matrix = display_matrix(frame)
                        self.info.hdr = {k: v for k, v in frame_side_data(frame).items() if k in _HDR_SIDE_DATA}
                    if not captions and has_side_data(frame, "A53_CC"):
                        # Closed captions ride inside the video stream (per frame), which is
                        # encoded again; PyAV gives no way to hand them to the encoder.
                        captions = True
                        if not self.quiet:
                            log.warning(f"not copied: {self.path.name}'s closed captions (CEA-608/708, inside its video stream); to keep them, "
                                        f"save them first: ffmpeg -f lavfi -i {captions_source(self.path)} -map 0:1 captions.srt")
                    if frame.interlaced_frame and not interlaced:
                        interlaced = True
                        if not self.quiet:
                            log.warning(f"{self.path.name} is interlaced: it is sharpened and written as whole (progressive) frames; deinterlace it first "
                                        f"for the best result (e.g. ffmpeg -i {shlex.quote(str(self.path))} -vf bwdif -c:a copy progressive.mkv)")
                    pts = frame.pts
                    if by_decode and pts is not None:
                        if frame.dts is not None:
                            offset = pts - frame.dts if offset is None else offset
                            pts = frame.dts + offset
                        elif last_pts is not None:  # drained at the end: one frame period each
                            pts = last_pts + step
                    if pts is None:  # raw streams carry no timestamps: space frames at the nominal rate
                        pts = 0 if last_pts is None else last_pts + step
                    if last_pts is not None and pts <= last_pts:
                        # H.264 and every muxer need times that go forward; writing on would
                        # end in a muxer error that names neither the cause nor the frame.
                        raise LivesharpError(
                            f"{self.path}: damaged timing: frame {n + 1} is stamped {float((pts - first_pts) * tb):.3f} s, "
                            f"not after frame {n} at {float((last_pts - first_pts) * tb):.3f} s; "
                            f"re-mux or re-encode the file first (e.g. ffmpeg -i in fixed.mkv)"
                        )
                    if first_pts is None:
                        first_pts = pts
                    last_pts = pts
                    seen.add(frame.pts)
                    end = float((pts + (frame.duration or step)) * tb)
                    video_end = end if video_end is None else max(video_end, end)
                    n += 1
                    # The stream's matrix and range, not swscale's default (BT.601, limited).
                    rgb = frame.to_ndarray(format="rgb24", src_colorspace=self.colour.matrix, src_color_range=self.colour.range)
                    yield Frame(rgb, pts, frame.duration or None)
        except av.error.FFmpegError as e:
            raise damaged(e.strerror or str(e)) from None
        if n == 0:
            raise LivesharpError(f"{self.path}: the video stream has no decodable frames; check the file")
        # A decoder that meets a frame whose reference is lost (a keyframe gone) may skip it
        # without an error: a hole in the video. Frames before the first one shown (an open
        # GOP's leading pictures in a cut stream) are not expected.
        lost = sorted(t for t in expected - seen if t > first_pts)
        if lost:
            raise LivesharpError(
                f"{self.path}: damaged video data: the decoder could not decode {len(lost)} of the {len(expected)} stored frames "
                f"(the first at {float((lost[0] - first_pts) * tb):.2f} s); repair or re-encode the file first"
            )
        self._check_complete(stored, first_pts, video_end, audio_end)
        self.frames_read = n

    def _check_complete(self, stored: int, first_pts: int, video_end: float, audio_end: float | None) -> None:
        """Refuse a file cut short (an interrupted copy or recording, or a demuxer that lost its
        way in damaged data and gave up): it decodes without an error, but ends early, while its
        header still promises the full length."""
        v, tb = self.video, self.info.time_base

        def truncated(what: str) -> LivesharpError:
            return LivesharpError(f"{self.path}: truncated or damaged: {what}; repair or re-export the file first")

        declared = v.frames  # MP4, MOV and AVI list every frame: compare exactly
        if declared > 0:
            # Packets, not decoded frames: a file cut with `-ss ... -c copy` starts at the
            # keyframe before the cut, and its edit list hides the frames up to the cut.
            # AVI stores a repeated frame as a 0-byte chunk that its header counts and the
            # demuxer skips: there, a file whose RIFF chunks run whole to its end is complete.
            if stored < declared and not (self.container.format.name == "avi" and _riff_complete(self.path)):
                raise truncated(f"the video ends after {stored} of the {declared} frames its header lists")
            return
        frame = 1 / float(self.info.rate or 30)
        start = float(first_pts * tb)
        end_declared, end_read = None, video_end
        tag = v.metadata.get("DURATION")  # Matroska's muxers note each track's end (absolute)
        if tag:
            try:
                h, m, sec = tag.split(":")
                end_declared = int(h) * 3600 + int(m) * 60 + float(sec)
            except ValueError:
                end_declared = None
        if end_declared is None and v.duration is not None and v.start_time is not None:
            end_declared = float((v.start_time + v.duration) * tb)
        if end_declared is None and self.container.duration:
            # The container's duration covers every stream: compare with whichever ended last.
            total = self.container.duration / av.time_base
            if "matroska" in self.container.format.name:
                end_declared = total  # Matroska's segment duration is where the last block ends
            else:
                end_declared = (self.container.start_time or 0) / av.time_base + total
            if audio_end is not None:
                end_read = max(end_read, audio_end)
        if end_declared is None:
            return
        if "matroska" in self.container.format.name or tag:
            slack = 1.5 * frame  # a duration written by the muxer: exact up to the last frame's length
        else:
            slack = 0.5 + 2 * frame  # an estimate (from the bit rate, or the last timestamps found)
        if end_declared - end_read > slack:
            raise truncated(
                f"the video ends at {end_read - start:.2f} s but its header says {end_declared - start:.2f} s"
            )

    def close(self) -> None:
        self.container.close()


def _riff_complete(path: Path) -> bool:
    """Whether a RIFF file (AVI, and OpenDML's RIFF AVIX extensions) is as long as its chunks
    say: a file cut short ends inside one. Not a file (a pipe): cannot tell, so False."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            at = 0
            while at + 8 <= size:
                f.seek(at)
                head = f.read(8)
                if head[:4] != b"RIFF":
                    return False
                at += 8 + int.from_bytes(head[4:8], "little") + (head[4] & 1)
            return at == size or at == size + 1  # an odd last chunk may lack its pad byte
    except OSError:
        return False


_LABELS = ("forced", "hearing_impaired", "visual_impaired", "comment", "original", "dub", "karaoke", "lyrics", "clean_effects", "captions", "descriptions")


def _labels(stream) -> set[str]:
    """The dispositions of ``stream`` a viewer relies on (forced, commentary, hearing impaired,
    ...); "default", which muxers set for themselves, aside."""
    d = getattr(stream, "disposition", None)
    try:
        return {name for name in _LABELS if d & getattr(type(d), name)}
    except (AttributeError, TypeError):
        return set()


def _copy_labels(src, dst) -> None:
    """A stream's language, title and disposition (default, commentary, forced, ...) onto its copy."""
    tags = copyable_tags(src.metadata)
    if "name" in tags and "title" not in tags:  # MP4 reads a track's title back as "name"
        tags["title"] = tags.pop("name")
    dst.metadata.update(tags)
    try:
        dst.disposition = src.disposition
    except (AttributeError, ValueError, TypeError):
        pass


class VideoWriter:
    """Encode RGB frames to H.264 (yuv420p) with the timestamps they came with; copy audio as is.

    The container is opened on the first frame, when the output size is known. The output's
    timeline starts at that frame, or at ``start`` when it is earlier (audio that leads the
    picture): every stream is moved back by that time, so a transport stream whose clock read
    3600 s (or a recording cut from the middle of one) does not become an hour of empty
    lead-in, and audio keeps its offset to the video. Packets that end before that (a lead
    shorter than ``start`` is worth) are kept as they are, before 0, where players skip them,
    unless ``cut``: the video before the first frame was lost (a stream cut mid-GOP), and audio
    that ends before it has nothing to play against.
    """

    def __init__(
        self,
        path: str | Path,
        info: VideoInfo,
        crf: int = 18,
        preset: str = "medium",
        matrix: list[int] | None = None,
        label: str | Path | None = None,
        start: int | None = None,
        cut: bool = False,
    ):
        self.path = Path(path)
        self.cut = cut
        self.start = start  # in the input video's time base: where the output's time 0 may be, before the first frame
        self.label = label or self.path  # how messages name the output: the user's name, not a temp file's
        self.format = OUTPUT_FORMATS[self.path.suffix.lower()]
        self.info, self.crf, self.preset, self.matrix = info, crf, preset, matrix
        self.container = None
        self.stream = None
        self.copy_map: dict = {}  # input stream index -> output stream, for copied packets
        self._durations: dict[int, int] = {}  # pts -> duration of frames not yet out of the encoder
        self._first: tuple[int, int] | None = None  # (pts, dts) of the first video packet
        self._end = 0  # latest pts + duration so far: where the video ends
        self._held: av.Packet | None = None  # the newest video packet, muxed once the next one exists
        self._t0: int | None = None  # the first frame's pts in the input: the output's time 0
        self._hidden: dict[int, av.Packet] = {}  # input stream -> the latest audio packet its edit list hides, not written yet
        self._undated: dict[int, av.Packet] = {}  # input stream -> its audio packet without a duration, waiting for the next one (MP4, MOV)
        self._last_duration: dict[int, int] = {}
        self._copied: collections.Counter = collections.Counter()  # input stream -> packets copied

    @property
    def copied(self) -> list:
        """The input streams copied as they are, packet by packet."""
        return [*self.info.audio, *self.info.subtitles, *self.info.pictures, *self.info.data]

    def _open(self, width: int, height: int) -> None:
        try:
            # Matroska by default shifts every stream so that the first packet it is given
            # starts at 0. Copied AAC starts just before 0 (encoder priming), so the video would
            # move by that much. Its blocks may start before their cluster: keep the times as they are.
            options = {"avoid_negative_ts": "disabled"} if self.format == "matroska" else {}
            # A phone's reverse-DNS keys (com.apple.quicktime.location.ISO6709, make, model) are
            # QuickTime "mdta" keys, which MP4/MOV write only in that mode, as the input has them.
            if self.format in ("mov", "mp4") and any("." in k for k in self.info.metadata):
                options["movflags"] = "use_metadata_tags"
            self.container = av.open(str(self.path), "w", format=self.format, options=options)
        except (av.error.FFmpegError, OSError) as e:
            raise LivesharpError(f"{self.label}: cannot create the output file ({e}); choose a writable folder") from None
        # Streams in the input's order (a script's `-map 0:1` still finds the audio), the
        # sharpened video where the input's was.
        main = self.info.video_stream.index if self.info.video_stream is not None else -1
        for a in sorted(self.copied, key=lambda a: a.index):
            if self.stream is None and a.index > main:
                self._add_video(width, height)
            try:
                self.copy_map[a.index] = out = self.container.add_stream_from_template(a)
            except (av.error.FFmpegError, ValueError) as e:
                raise LivesharpError(
                    f"{describe_stream(a)} cannot be copied into {self.path.suffix} ({e}); use a .mkv output"
                ) from None
            _copy_labels(a, out)
        if self.stream is None:
            self._add_video(width, height)
        for a in self.info.attachments:  # written with the header: no packets
            self.container.add_attachment(a.name or f"attachment-{a.index}", a.mimetype or "application/octet-stream", bytes(a.data))
        self.container.metadata.update(self.info.metadata)
        if self.info.chapters:
            self.container.set_chapters(self._chapters())

    def _add_video(self, width: int, height: int) -> None:
        s = self.container.add_stream("libx264", rate=self.info.rate)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        # Converted back with the input's matrix and range, and tagged as the input was, so a
        # player shows the colours the input had (untagged input: what players assume for it).
        c = self.colour = self.info.colour or colour_of(UNSPECIFIED, UNSPECIFIED, UNSPECIFIED, 0, width, height)
        cc = s.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = c.space, c.primaries, c.trc, c.range
        if self.info.sample_aspect_ratio:  # anamorphic: shown as wide as it was (side by side too: each panel keeps its pixels)
            cc.sample_aspect_ratio = self.info.sample_aspect_ratio
        s.time_base = self.info.time_base
        s.codec_context.time_base = self.info.time_base
        s.options = {"crf": str(self.crf), "preset": self.preset}
        hdr = x264_hdr_params(self.info.hdr)
        if hdr:  # HDR10's mastering display and light levels, written again as the input had them
            s.options = dict(s.options, **{"x264-params": hdr})
        if self.matrix is not None:
            s.set_display_matrix(self.matrix)
        if self.info.video_stream is not None:
            _copy_labels(self.info.video_stream, s)
        self.stream = s

    def _chapters(self) -> list[dict]:
        """The input's chapters on the output's timeline (see the class docstring)."""
        t0 = Fraction(self._t0 or 0) * self.info.time_base
        out = []
        for c in self.info.chapters:
            shift = round(t0 / c["time_base"])
            if c["end"] - shift > 0:
                out.append(dict(c, start=max(0, c["start"] - shift), end=c["end"] - shift))
        return out

    def write(self, rgb: np.ndarray, pts: int, duration: int | None = None) -> None:
        if self._t0 is None:
            self._t0 = pts if self.start is None else min(pts, self.start)
        if self.container is None:
            self._open(rgb.shape[1], rgb.shape[0])
        pts -= self._t0
        c = self.colour
        if c.range == 2:
            frame = rgb_to_yuv420p_full(rgb, c.space)
        else:  # swscale's limited-range path rounds correctly
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=c.matrix, dst_color_range=ColorRange(c.range))
        frame.colorspace, frame.color_primaries, frame.color_trc, frame.color_range = c.space, c.primaries, c.trc, c.range
        frame.pts = pts
        frame.time_base = self.info.time_base
        if duration:
            frame.duration = duration
            self._durations[pts] = duration
        self._mux_video(self.stream.encode(frame))

    def _mux_video(self, packets: list[av.Packet]) -> None:
        """Give packets the duration of their frame, and hold back the newest one for close().

        libx264 leaves packet durations at 0; the muxer then guesses them from the average rate,
        and a variable-rate file comes out with a different duration than it went in.
        """
        for p in packets:
            d = self._durations.pop(p.pts, None)
            if d and not p.duration:
                p.duration = d
            if self._first is None:
                self._first = (p.pts, p.dts)
            self._end = max(self._end, p.pts + p.duration)
            if self._held is not None:
                self._mux([self._held])
            self._held = p

    def _mux_last(self) -> None:
        p = self._held
        if p is None:
            return
        if self.format in ("mp4", "mov"):
            # An MP4 track lasts from its first to its last decode time plus the last packet's
            # duration. With B-frames the last packet in decode order is not the last one shown,
            # so give it whatever time is left until the video's end.
            pts0, dts0 = self._first
            p.duration = max(p.duration, (self._end - pts0) - (p.dts - dts0))
        self._held = None
        self._mux([p])

    def write_packet(self, packet: av.Packet) -> None:
        """Copy one audio, subtitle, attached-picture or data packet, on the output's timeline; call it after the first ``write``."""
        if packet.stream.type == "audio" and self.format not in ("mp4", "mov"):
            # Sound an MP4's edit list hides (a clip cut with -ss -c copy keeps what it cut, flagged
            # as discarded): MP4 and MOV hide it again, Matroska has no such flag and would play
            # it. Only the last such packet before the kept sound is written, as the decoder's
            # priming (an AAC encoder's own first packet is flagged the same way).
            if packet.is_discard:
                self._hidden[packet.stream_index] = packet
                return
            primer = self._hidden.pop(packet.stream_index, None)
            if primer is not None:
                self._copy(primer)
        elif packet.stream.type == "audio" and not packet.duration:
            # Matroska stores no duration on most audio blocks; MP4 and MOV then drop the track's
            # last packet as empty (61 ms of an ALAC track). Each one's duration is where the
            # next one starts, so it waits for the next (the last takes the one before's).
            held = self._undated.pop(packet.stream_index, None)
            self._undated[packet.stream_index] = packet
            if held is None:
                return
            if held.pts is not None and packet.pts is not None and packet.pts > held.pts:
                held.duration = packet.pts - held.pts
            packet = held
        self._copy(packet)

    def _copy(self, packet: av.Packet) -> None:
        if packet.duration:
            self._last_duration[packet.stream_index] = packet.duration
        if self._t0 and packet.pts is not None:
            shift = round(self._t0 * self.info.time_base / packet.time_base)
            if self.cut and packet.pts - shift + (packet.duration or 0) < 0:
                return  # over before the first whole frame
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
        self._copied[packet.stream_index] += 1
        packet.stream = self.copy_map[packet.stream_index]
        self._mux([packet])

    def _mux(self, packets) -> None:
        try:
            self.container.mux(packets)
        except (av.error.FFmpegError, OSError) as e:
            raise self._failed(e) from None

    def _failed(self, e: Exception) -> LivesharpError:
        why = getattr(e, "strerror", None) or str(e)
        if not Path(self.label).parent.is_dir():
            return LivesharpError(f"{self.label}: writing failed: the output folder {Path(self.label).parent} was removed while livesharp wrote; create it and run again")
        if isinstance(e, OSError) or "space" in why.lower():
            return LivesharpError(f"{self.label}: writing failed ({why}); check free disk space")
        return LivesharpError(f"{self.label}: writing failed ({why}); check free disk space, or try a .mkv output")

    def abort(self) -> None:
        """Stop after a failure: give back the file without flushing the encoder. What was
        written is incomplete; the caller removes it (``files.atomic_output`` does)."""
        if self.container is not None:
            container, self.container = self.container, None
            try:
                container.close()  # may write a trailer: on a full disk that fails too, and the first error is the one to tell
            except (av.error.FFmpegError, OSError):
                pass

    def close(self) -> None:
        """Flush the encoder and write the container trailer."""
        if self.container is None:
            return
        if self.stream is not None:
            try:
                packets = self.stream.encode(None)
            except (av.error.FFmpegError, OSError) as e:
                raise self._failed(e) from None
            self._mux_video(packets)
            self._mux_last()
        for index, last in self._undated.items():  # each stream's last undated packet, as long as the one before it
            last.duration = self._last_duration.get(index, 0)
            self._copy(last)
        self._undated.clear()
        container, self.container = self.container, None
        try:
            container.close()  # the trailer: MP4 writes its whole index here
        except (av.error.FFmpegError, OSError) as e:
            raise self._failed(e) from None
        self._name_lost_tags()

    def _name_lost_tags(self) -> None:
        """Tags and labels the output's format did not keep, named in one warning: MP4 and MOV
        write only the keys and dispositions they know (a Matroska file's own tags, a track's
        custom ones, MOV's forced or commentary flags are dropped), and MP4 no track without
        samples. Read back from the finished file, since the muxer decides."""
        try:
            with av.open(str(self.path)) as out:
                kept = {k.lower() for k in out.metadata}
                streams = {s.index: ({k.lower() for k in s.metadata}, _labels(s)) for s in out.streams}
        except (av.error.FFmpegError, OSError):
            return
        lost = [f"the tag {k}" for k in self.info.metadata if k.lower() not in kept]
        pairs = [(next(s for s in self.copied if s.index == index), copy) for index, copy in self.copy_map.items()]
        if self.info.video_stream is not None and self.stream is not None:
            pairs.insert(0, (self.info.video_stream, self.stream))
        # A muxer that leaves out tracks without packets (MP4) moves the later ones up.
        empty = {copy.index for src, copy in pairs if src is not self.info.video_stream and not self._copied[src.index]}
        gone = empty if len(streams) == len(pairs) - len(empty) else set()
        for src, copy in sorted(pairs, key=lambda p: p[0].index):
            if copy.index in gone:
                lost.append(f"stream {src.index} itself (it holds no packets)")
                continue
            names, labels = streams.get(copy.index - sum(g < copy.index for g in gone), (set(), set()))
            tags = copyable_tags(src.metadata)
            if tags.get("language") == "und":  # "undetermined": Matroska's default, which it does not write
                del tags["language"]
            missing = [f"the tag {k}" for k in tags if k.lower() not in names and not (k.lower() == "name" and "title" in names)]
            missing += [f"the label {f}" for f in sorted(_labels(src) - labels)]
            lost += [f"{k} of stream {src.index}" for k in missing]
        if lost:
            log.warning(f"not copied: {', '.join(lost)}: {self.path.suffix} cannot hold them; write .mkv to keep them")
