"""Stages as threads joined by bounded queues.

A file never drops a frame: every queue blocks when full (completeness beats latency). The
inference stage batches opportunistically: it takes whatever frames are already decoded, up to
``batch``, and never waits to fill a batch.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import queue
import signal
import threading
import time
import warnings
import zlib
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps
from tqdm import tqdm

from . import ops
from .engine import Sharpener
from .errors import LivesharpError, OutOfMemory, allocation_failed, out_of_memory
from .files import OutputAppeared, atomic_output, remove_stale_partials
from .io import (IMAGE_SUFFIXES, OUTPUT_FORMATS, Frame, VideoReader, VideoWriter, check_input, check_output, fit_streams, jpeg_is_complete, jpeg_segments, PNG_SIGNATURE, png_chunks, png_is_complete,
                 refuse_still_image, refuse_video)
from .settings import FILE_BATCH, IMAGE_OVERLAP, IMAGE_TILE, VIDEO_DETAIL_EVERY
from .tiling import tiled

if TYPE_CHECKING:
    from .model import Student  # only named in annotations: importing it would import torch

log = logging.getLogger("livesharp")

END = object()  # end-of-stream marker that travels through the queues


class _Stopped(Exception):
    """Another stage failed or the user pressed Ctrl-C: unwind this one quietly."""


@dataclass
class FileResult:
    output: Path
    frames: int
    seconds: float
    width: int
    height: int
    model_seconds: float = 0.0  # inside Sharpener.sharpen_batch only: what the network costs

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Stages:
    """Runs stage functions in threads; the first failure stops them all and is re-raised."""

    def __init__(self):
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def put(self, q: queue.Queue, item) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                pass
        raise _Stopped

    def get(self, q: queue.Queue):
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                pass
        raise _Stopped

    def start(self, name: str, fn, *args) -> None:
        def run():
            try:
                fn(*args)
            except _Stopped:
                pass
            except BaseException as e:  # reported by wait(); the other stages are told to stop
                self.errors.append(e)
                self.stop.set()

        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    def wait(self, tick: Callable[[], None] | None = None) -> None:
        """Join every stage; Ctrl-C stops them all before it propagates.

        ``tick`` is main-thread work done while waiting (and once more at the end), for what
        must not run in a stage's thread, such as driving a preview window. If it raises, the
        stages are stopped and its error propagates."""
        try:
            for t in self.threads:
                while t.is_alive():
                    if tick is not None:
                        tick()
                    t.join(0.1 if tick is None else 0.005)
            if tick is not None and not self.errors:
                tick()
        except BaseException:
            self.stop.set()
            for t in self.threads:
                t.join(5)
            raise
        if self.errors:
            raise self.errors[0]


@contextmanager
def signals_handled(names: tuple[str, ...], handler):
    """Within the block, the signals ``names`` (those this OS has) go to ``handler``; the old
    handlers come back after. Only the main thread may set handlers: elsewhere this does nothing,
    since there the signals are not ours to take."""
    wanted = [getattr(signal, name) for name in names if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        wanted = []
    before = {sig: signal.signal(sig, handler) for sig in wanted}
    try:
        yield
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def stop_on_term_and_hup():
    """Within the block, SIGTERM (kill, a service manager) and SIGHUP (the terminal closed)
    stop the run the way Ctrl-C does (KeyboardInterrupt in the main thread), so the hidden
    partial output is removed. Call it from the main thread."""
    return signals_handled(("SIGTERM", "SIGHUP"), signal.default_int_handler)


@contextmanager
def published(dst: Path, overwrite: bool):
    """``atomic_output`` for a user's output: without --overwrite, a file that appeared under
    the name while we worked (another program, a second run) is never replaced. Temp files
    that killed runs left for this output are removed first, and said so."""
    stale = remove_stale_partials(dst)
    if stale:
        log.warning(f"removed {len(stale)} unfinished file(s) that an earlier, killed run left beside {dst.name}: {', '.join(p.name for p in stale)}")
    written = False
    try:
        with atomic_output(dst, replace=overwrite) as tmp:
            yield tmp
            written = True
    except OutputAppeared as e:
        raise LivesharpError(
            f"{dst}: appeared while livesharp was writing and was not replaced; the result is in {e.kept} "
            f"(pass --overwrite to replace it)"
        ) from None
    except OSError as e:
        if not written:
            raise
        # The result was complete; giving it its name failed (its folder was removed, say).
        raise LivesharpError(f"{dst}: the finished output could not be given its name ({_folder_gone(dst) or e.strerror}); nothing was written") from None


def _folder_gone(dst: Path) -> str | None:
    """Why an output failed, when the reason is that its folder no longer exists."""
    if not dst.parent.is_dir():
        return f"the output folder {dst.parent} was removed while livesharp wrote; create it and run again"
    return None


def open_sharpener(sharpener: Sharpener | None, **options) -> tuple[Sharpener, bool]:
    """The Sharpener a call runs on, and whether the call owns it (opened it, so closes it).

    ``options`` are ``Sharpener``'s keyword arguments; None ones take its defaults. An open
    ``sharpener`` already carries its own, so passing both is an error rather than a silent
    choice between them.

    >>> open_sharpener(object(), model="unsharp")
    Traceback (most recent call last):
    ...
    livesharp.errors.LivesharpError: pass either sharpener= or model=, not both: an open Sharpener already has its model options
    """
    given = {k: v for k, v in options.items() if v is not None}
    if sharpener is not None:
        if given:
            names = ", ".join(f"{k}=" for k in given)
            raise LivesharpError(f"pass either sharpener= or {names}, not both: an open Sharpener already has its model options")
        return sharpener, False
    return Sharpener(**given), True


def compose(before: np.ndarray, after: np.ndarray, side_by_side: bool, matrix: list[int] | None, label: str) -> np.ndarray:
    """The frame that gets written: the result, or input | result upright when side by side."""
    if side_by_side:
        # The display matrix cannot turn or mirror two panels in place, so they are made as shown first.
        return ops.side_by_side(ops.upright(before, matrix), ops.upright(after, matrix), ("input", label))
    return after


def process_file(
    src: str | Path,
    dst: str | Path,
    *,
    model: str | Path | Student | None = None,
    device: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    strength: float | None = None,
    detail: bool | None = None,
    side_by_side: bool = False,
    batch: int = FILE_BATCH,
    overwrite: bool = False,
    crf: int = 18,
    preset: str = "medium",
    progress: bool | None = None,
    sharpener: Sharpener | None = None,
    max_frames: int | None = None,
    on_frame: Callable[[Frame, np.ndarray, np.ndarray], None] | None = None,
) -> FileResult:
    """Sharpen every frame of a video file, keeping its timing, rotation and audio.

    Args:
        src: input video; never modified.
        dst: output (.mp4, .mov, .mkv), written to a temporary file and renamed when complete.
        side_by_side: write input | sharpened, twice as wide.
        batch: most frames per inference call.
        progress: a progress bar; None shows it only on a terminal.
        model, device, backend, precision, strength, detail: what ``Sharpener`` takes; None is
            its default (tiny, auto, auto, auto, 1.0, True). A video's statistics for the detail
            stage are measured every ``VIDEO_DETAIL_EVERY`` frames.
        sharpener: an already-open Sharpener, instead of the six above (passing both is an error).
        max_frames: stop after this many frames (None: all of them).
        on_frame: called as ``on_frame(frame, sharpened, written)`` for every frame in order,
            in the calling thread (so it may drive a window), with the decoded ``io.Frame``,
            the sharpened (H, W, 3) uint8 RGB and the (H, W', 3) picture written (the
            side-by-side pair when ``side_by_side``). It sees frames as the encoder takes
            them; a slow one holds the pipeline back, never drops a frame.

    >>> process_file("talk.mp4", "talk_sharp.mp4", model="unsharp")  # doctest: +SKIP
    """
    src, dst = Path(src), Path(dst)
    if batch < 1:
        raise LivesharpError(f"--batch {batch}: must be 1 or more")
    if max_frames is not None and max_frames < 1:
        raise LivesharpError(f"max_frames={max_frames}: must be 1 or more, or None for every frame")
    check_input(src)
    refuse_still_image(src)  # first: its output name is likely an image's too
    check_output(src, dst, overwrite, OUTPUT_FORMATS)
    options = dict(model=model, device=device, strength=strength, backend=backend, precision=precision, detail=detail)
    if sharpener is not None:
        open_sharpener(sharpener, **options)  # both given: refused before any work
    reader = VideoReader(src)  # a bad input is reported before the model loads
    try:
        for line in fit_streams(reader.info, dst):  # and what the output cannot hold
            log.warning(line)
        sharpener, own = open_sharpener(sharpener, **options, detail_every=None if sharpener else VIDEO_DETAIL_EVERY)
    except BaseException:
        reader.close()
        raise
    info = reader.info
    stages = Stages()
    decoded: queue.Queue = queue.Queue(maxsize=2 * batch + 2)
    encoded: queue.Queue = queue.Queue(maxsize=2 * batch + 2)
    watched: queue.Queue = queue.Queue(maxsize=2 * batch + 2)  # to on_frame, in the calling thread
    audio: deque = deque()  # audio and subtitle packets: small, and the video queues bound how far they run ahead
    total = min(info.frames, max_frames) if info.frames and max_frames else info.frames or max_frames
    bar = tqdm(total=total or None, unit="frame", desc=src.name, disable=None if progress is None else not progress, dynamic_ncols=True)
    written = 0
    model_seconds = 0.0
    size = [0, 0]

    def decode():
        for frame in islice(reader.frames(on_packet=audio.append), max_frames):
            stages.put(decoded, frame)
        stages.put(decoded, END)

    def infer():
        nonlocal model_seconds
        done = False
        while not done:
            frames = [stages.get(decoded)]
            if frames[0] is END:
                break
            while len(frames) < batch:  # take what is ready; never wait to fill a batch
                try:
                    f = decoded.get_nowait()
                except queue.Empty:
                    break
                if f is END:
                    done = True
                    break
                frames.append(f)
            t = time.perf_counter()
            results = sharpener.sharpen_batch([f.rgb for f in frames])
            model_seconds += time.perf_counter() - t
            for f, out in zip(frames, results):
                stages.put(encoded, (f, out, compose(f.rgb, out, side_by_side, reader.matrix, sharpener.name)))
        stages.put(encoded, END)

    def encode():
        nonlocal written, writer
        while (item := stages.get(encoded)) is not END:
            source, out, composed = item
            if on_frame is not None:
                stages.put(watched, item)
            f = Frame(composed, source.pts, source.duration)
            rgb = ops.pad_to_even(f.rgb)
            if written == 0:
                # Opened here: the rotation is known once the reader has decoded a frame, and
                # the audio read so far says whether sound starts before the picture.
                lead = _lead(audio, source.pts, reader, info.time_base)
                shown = info
                if side_by_side and info.sample_aspect_ratio and ops.swaps_sides(reader.matrix):
                    shown = replace(info, sample_aspect_ratio=1 / info.sample_aspect_ratio)  # the panels were turned: so were their pixels
                writer = VideoWriter(tmp, shown, crf=crf, preset=preset, matrix=None if side_by_side else reader.matrix, label=dst,
                                     start=lead, cut=not reader.clean_start)
                _say_moved_start(reader, float((source.pts if lead is None else lead) * info.time_base))
                size[:] = rgb.shape[1], rgb.shape[0]
                if rgb.shape != f.rgb.shape:
                    h, w = f.rgb.shape[:2]
                    log.warning(f"{w}x{h} has an odd side and H.264 yuv420p needs even ones: writing {size[0]}x{size[1]} (last row/column repeated)")
            writer.write(rgb, f.pts, f.duration)
            written += 1
            bar.update(1)
            while audio:
                writer.write_packet(audio.popleft())
        while audio:
            writer.write_packet(audio.popleft())
        writer.close()

    def watch():  # the calling thread's share: every frame the encoder has taken, in order
        while True:
            try:
                item = watched.get_nowait()
            except queue.Empty:
                return
            on_frame(*item)

    t0 = time.perf_counter()
    writer = None
    try:
        with published(dst, overwrite) as tmp:
            stages.start("decode", decode)
            stages.start("infer", infer)
            stages.start("encode", encode)
            try:
                stages.wait(tick=None if on_frame is None else watch)
            except BaseException:
                if writer is not None:
                    writer.abort()  # before atomic_output removes its file
                raise
    finally:
        bar.close()
        reader.close()
        if own:
            sharpener.close()
    return FileResult(dst, written, time.perf_counter() - t0, size[0], size[1], model_seconds)


def _say_moved_start(reader: VideoReader, start: float) -> None:
    """A file made to start later than 0 (an MP4 or Matroska clip placed at 2 s on an editor's
    timeline) comes out starting at 0, every stream moved back alike (``VideoWriter``): said.
    A transport stream's clock starts anywhere, so there it is not news."""
    formats = set(reader.container.format.name.split(","))
    if start > 0.1 and formats & {"mov", "mp4", "matroska", "webm"}:
        log.warning(f"{reader.path.name} starts at {start:.3f} s: the output starts at 0, with every stream moved back by that much")


def _lead(packets, first_pts: int, reader: VideoReader, time_base) -> int | None:
    """Where the output's timeline starts, in ``time_base``, when audio or subtitles start before
    the first video frame (None: at that frame). Kept from their first packet (an encoder's
    priming packet aside), unless the video before its first frame was lost (a stream cut
    mid-GOP): then the output starts at the first whole frame, and the audio before it is said
    to be cut."""
    first = first_pts * time_base
    audio = [p for p in packets if p.stream.type == "audio" and p.pts is not None and not p.is_discard]
    # An encoder's priming (AAC's first 1024 samples, a transport stream keeps no flag for it)
    # leads by about one packet: it is kept as it is, before 0, where players skip it; so is any
    # audio lead this short (VideoWriter keeps packets that end before 0 unless ``cut``).
    # Subtitles always move the start: muxers clamp a cue's time before 0 to 0.
    packet = max([p.duration * p.time_base for p in audio if p.duration] or [0])
    starts = [t for t in (p.pts * p.time_base for p in audio) if first - t > max(packet, Fraction(1, 20))]
    starts += [t for t in (p.pts * p.time_base for p in packets if p.stream.type == "subtitle" and p.pts is not None) if t < first]
    if not starts:
        return None
    if reader.clean_start:
        return math.floor(min(starts) / time_base)
    log.warning(f"{reader.path.name}: its first {float(first - min(starts)):.2f} s of audio or subtitles come before the first video frame "
                f"that can be decoded (the file starts mid-GOP) and are not kept")
    return None


DEEP_SUFFIXES = (".png", ".tif", ".tiff")  # 16 bits per channel
ALPHA_SUFFIXES = (".png", ".tif", ".tiff", ".webp")


# Rows of a 16-bit picture converted at once: its 32-bit arithmetic, done whole, took 2.6 GB
# for 48 MP where the 8-bit path, tiled, takes 0.9.
ROWS = 256


def _to_8bit(a: np.ndarray) -> np.ndarray:
    """uint16 -> uint8, rounded (65535 -> 255).

    >>> _to_8bit(np.array([0, 128, 257, 65535], np.uint16)).tolist()
    [0, 0, 1, 255]
    """
    out = np.empty(a.shape, np.uint8)
    for r in range(0, len(a), ROWS):
        out[r:r + ROWS] = (a[r:r + ROWS].astype(np.uint32) + 128) // 257
    return out


def _add_detail_16bit(full: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The 16-bit ``full`` plus what the network added to its 8-bit view (``after - before``),
    scaled to 16 bits: nothing else of the original is lost.

    >>> full = np.array([[1000, 65535]], np.uint16)
    >>> _add_detail_16bit(full, np.array([[4, 255]], np.uint8), np.array([[6, 250]], np.uint8)).tolist()
    [[1514, 64250]]
    """
    out = np.empty_like(full)
    for r in range(0, len(full), ROWS):
        rows = slice(r, r + ROWS)
        out[rows] = np.clip(full[rows].astype(np.int32) + (after[rows].astype(np.int32) - before[rows]) * 257, 0, 65535)
    return out


def image_metadata(data: bytes) -> tuple[bytes | None, list[str]]:
    """The ICC colour profile a JPEG, PNG or WebP file carries (None when it has none), and the
    other metadata in it, by name, that livesharp does not copy (OpenCV drops it all).

    >>> image_metadata(bytes.fromhex("ffd8 ffe1000a 457869660000 ffd9"))
    (None, ['EXIF metadata'])
    """
    icc: dict[int, bytes] = {}
    others: list[str] = []
    text: list[str] = []
    if data[:2] == b"\xff\xd8":
        for marker, view in jpeg_segments(data):
            if marker == 0xD9 and any(view):  # bytes after the picture's end: a motion photo's video, say
                others.append(f"{len(view) / 1024:.0f} KB of data after the picture (a motion photo's video?)")
            if marker in (0xDA, 0xD9):  # the picture starts: no metadata after it (but scan to its end)
                continue
            head = bytes(view[:30])
            if marker == 0xE1 and head.startswith(b"Exif\x00"):
                others.append("EXIF metadata")
            elif marker == 0xE1 and head.startswith(b"http://ns.adobe.com/xap/1.0/\x00"):
                others.append("XMP metadata")
            elif marker == 0xE2 and head.startswith(b"ICC_PROFILE\x00") and len(view) > 14:
                icc[view[12]] = bytes(view[14:])
            elif marker == 0xED and head.startswith(b"Photoshop 3.0\x00"):
                others.append("IPTC metadata")
            elif marker == 0xFE:
                others.append("a JPEG comment")
    elif data[:8] == PNG_SIGNATURE:
        for kind, view in png_chunks(data):
            body = bytes(view) if kind in (b"iCCP", b"tEXt", b"zTXt", b"iTXt") else b""
            if kind == b"iCCP":
                with contextlib.suppress(zlib.error, IndexError):
                    icc[1] = zlib.decompress(body[body.index(b"\x00") + 2 :])
            elif kind == b"eXIf":
                others.append("EXIF metadata")
            elif kind in (b"tEXt", b"zTXt", b"iTXt"):
                keyword = body.split(b"\x00", 1)[0].decode("latin-1")
                (others.append("XMP metadata") if keyword == "XML:com.adobe.xmp" else text.append(keyword))
            elif kind in (b"IDAT", b"IEND"):
                break
        if text:
            others.append(f"PNG text ({', '.join(dict.fromkeys(text))})")
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        i = 12
        while i + 8 <= len(data):
            kind, n = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
            if kind == b"ICCP":
                icc[1] = data[i + 8 : i + 8 + n]
            elif kind == b"EXIF":
                others.append("EXIF metadata")
            elif kind == b"XMP ":
                others.append("XMP metadata")
            i += 8 + n + (n & 1)
    return (b"".join(icc[k] for k in sorted(icc)) or None), list(dict.fromkeys(others))


# How a PNG's numbers map to colours when it has no ICC profile: gamma, primaries, or "sRGB".
PNG_COLOUR_CHUNKS = (b"gAMA", b"cHRM", b"sRGB")


def png_grey_key(data: bytes) -> int | None:
    """The grey level a grey PNG marks transparent (its tRNS chunk), on the scale OpenCV reads it
    (8-bit for depths up to 8, else 16-bit), or None. OpenCV reads a colour PNG's key as alpha,
    not a grey one's: its transparency was dropped without a word.

    >>> head = PNG_SIGNATURE + bytes.fromhex("0000000d49484452") + bytes(8) + bytes([4, 0, 0, 0, 0]) + bytes(4)
    >>> png_grey_key(head + bytes.fromhex("00000002 74524e53 0003") + bytes(4))  # 4-bit grey, level 3 of 15
    51
    """
    if data[:8] != PNG_SIGNATURE:
        return None
    depth = kind = None
    for name, body in png_chunks(data):
        if name == b"IHDR" and len(body) >= 10:
            depth, kind = body[8], body[9]
        elif name == b"tRNS" and kind == 0 and len(body) >= 2:
            key = int.from_bytes(body[:2], "big")
            return key * 255 // (2**depth - 1) if depth < 8 else key
        elif name in (b"IDAT", b"IEND"):
            return None
    return None


def png_colour_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """A PNG's colour chunks (``PNG_COLOUR_CHUNKS``), which come before its picture data.

    >>> png = with_png_chunks(PNG_SIGNATURE + bytes.fromhex("0000000d49484452") + bytes(17), [(b"gAMA", bytes(4))])
    >>> png_colour_chunks(png)
    [(b'gAMA', b'\\x00\\x00\\x00\\x00')]
    """
    if data[:8] != PNG_SIGNATURE:
        return []
    found = []
    for kind, body in png_chunks(data):
        if kind in (b"IDAT", b"IEND"):
            break
        if kind in PNG_COLOUR_CHUNKS:
            found.append((kind, bytes(body)))
    return found


def with_png_chunks(data: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """An encoded PNG with ``chunks`` ((type, data) pairs) right after its header chunk."""
    made = b"".join(len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big") for kind, body in chunks)
    end_of_ihdr = 8 + 12 + int.from_bytes(data[8:12], "big")
    return data[:end_of_ihdr] + made + data[end_of_ihdr:]


def icc_colour_space(icc: bytes) -> str:
    """The kind of pixel an ICC profile describes, from its header: RGB, GRAY, CMYK, ...

    >>> icc_colour_space(bytes(16) + b"GRAY" + bytes(108))
    'GRAY'
    """
    return icc[16:20].decode("latin-1").strip()


def with_icc(data: bytes, icc: bytes) -> bytes | None:
    """An encoded PNG or JPEG with ``icc`` as its colour profile; None for other formats.

    >>> with_icc(bytes.fromhex("ffd8 ffd9"), b"p")[:20]
    b'\\xff\\xd8\\xff\\xe2\\x00\\x11ICC_PROFILE\\x00\\x01\\x01'
    """
    if data[:8] == PNG_SIGNATURE:
        return with_png_chunks(data, [(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))])
    if data[:2] == b"\xff\xd8":
        size = 65519  # what one APP2 segment holds after its 14-byte header
        parts = [icc[i : i + size] for i in range(0, len(icc), size)]
        if len(parts) > 255:
            return None
        segments = b"".join(b"\xff\xe2" + (len(p) + 16).to_bytes(2, "big") + b"ICC_PROFILE\x00" + bytes([k + 1, len(parts)]) + p
                            for k, p in enumerate(parts))
        at = 2 + (2 + int.from_bytes(data[4:6], "big") if data[2:4] == b"\xff\xe0" else 0)  # after SOI and JFIF's APP0
        return data[:at] + segments + data[at:]
    return None


class Header(NamedTuple):
    """What Pillow reads from a picture's header, not its pixels."""

    format: str | None
    info: dict
    tags: set[int]  # the numbers of a TIFF's tags
    orientation: int  # EXIF's: 1 upright


def _header(src: Path) -> Header | None:
    """The picture's ``Header``; None where Pillow cannot read one (no EXIF tag to turn it by)."""
    try:
        with warnings.catch_warnings(), Image.open(src) as im:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Header(im.format, dict(im.info), set(getattr(im, "tag_v2", None) or ()),
                          im.getexif().get(ExifTags.Base.Orientation, 1))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def image_dpi(header: Header | None) -> tuple[float, float] | None:
    """The resolution a picture's header (``_header``) states, in dots per inch (Pillow reads it
    from PNG's pHYs, JPEG's JFIF or EXIF, TIFF and BMP headers), or None."""
    if header is None:
        return None
    kind, info, tags, _ = header
    if kind == "TIFF" and 282 not in tags:  # no XResolution tag: Pillow says 1 dpi
        return None
    try:
        x, y = (float(v) for v in info.get("dpi"))
    except (TypeError, ValueError):
        return None
    return (x, y) if x > 0 and y > 0 else None


def with_dpi(data: bytes, dpi: tuple[float, float]) -> bytes | None:
    """An encoded PNG or JPEG (as OpenCV writes them) stating ``dpi``; None for other formats.

    >>> with_dpi(bytes.fromhex("ffd8 ffe00010 4a46494600 0101 00 0001 0001 0000 ffd9"), (300, 72)).hex(" ")[:56]
    'ff d8 ff e0 00 10 4a 46 49 46 00 01 01 01 01 2c 00 48 00'
    """
    if data[:8] == PNG_SIGNATURE:
        return with_png_chunks(data, [(b"pHYs", b"".join(round(d / 0.0254).to_bytes(4, "big") for d in dpi) + b"\x01")])  # pixels per metre
    if data[:2] == b"\xff\xd8" and data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\x00":
        density = b"\x01" + b"".join(min(65535, round(d)).to_bytes(2, "big") for d in dpi)  # dots per inch
        return data[:13] + density + data[18:]
    return None


def _read_bmp16(src: Path) -> np.ndarray | None:
    """A 16-bit BMP (5-5-5, or the 5-6-5 and other masks of BI_BITFIELDS) as (H, W, 3) uint8 RGB,
    each channel scaled to full range (31 -> 255); None for any other file.

    OpenCV shifts 5- and 6-bit channels left instead, so white came out 248 and every colour darker.
    """
    with open(src, "rb") as f:
        head = f.read(70)
    if len(head) < 54 or head[:2] != b"BM" or int.from_bytes(head[28:30], "little") != 16:
        return None
    u32 = lambda at: int.from_bytes(head[at : at + 4], "little")  # noqa: E731
    offset, width, height, compression = u32(10), u32(18), int.from_bytes(head[22:26], "little", signed=True), u32(30)
    if compression == 0:
        masks = (0x7C00, 0x03E0, 0x001F)
    elif compression in (3, 6) and len(head) >= 66:  # BI_BITFIELDS (masks after a 40-byte header, or inside a longer one)
        masks = (u32(54), u32(58), u32(62))
    else:
        return None
    if width <= 0 or height == 0 or not all(masks):
        return None
    h, stride = abs(height), (width * 2 + 3) // 4 * 4
    data = np.fromfile(src, np.uint8, count=h * stride, offset=offset)
    if data.size < h * stride:
        raise LivesharpError(f"{src}: truncated BMP: the file ends before the picture does; copy or export it again")
    px = data.reshape(h, stride)[:, : width * 2].copy().view("<u2").astype(np.uint32)
    if height > 0:  # stored bottom row first
        px = px[::-1]
    channels = []
    for mask in masks:
        shift = (mask & -mask).bit_length() - 1
        top = mask >> shift
        channels.append(((((px & mask) >> shift) * 255 * 2 + top) // (2 * top)).astype(np.uint8))  # rounded
    return np.ascontiguousarray(np.dstack(channels))


def tiff_as_stored(data: bytes) -> bytes | None:
    r"""A classic TIFF's bytes with its first page's Orientation tag set to 1 (as stored), or
    None where there is no such tag to change (or the file is not a classic TIFF).

    OpenCV 5 turns a TIFF by its tag even when told not to (a half turn came out turned twice,
    by it and by ``_upright``; a quarter turn failed inside it), and Pillow 13 scrambles a 16-bit
    grey TIFF it turns as it loads. Read as stored, every kind is turned by ``_upright`` alike.

    >>> head = b"II*\x00" + (8).to_bytes(4, "little") + (1).to_bytes(2, "little")
    >>> entry = (274).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little") + (6).to_bytes(4, "little")
    >>> tiff_as_stored(head + entry + bytes(4))[18:20]
    b'\x01\x00'
    """
    order = {b"II*\x00": "little", b"MM\x00*": "big"}.get(data[:4])
    if order is None or len(data) < 8:
        return None
    u = lambda at, n: int.from_bytes(data[at : at + n], order)  # noqa: E731
    ifd = u(4, 4)
    if ifd + 2 > len(data):
        return None
    for i in range(u(ifd, 2)):
        at = ifd + 2 + 12 * i
        if at + 12 > len(data):
            return None
        if u(at, 2) == 274 and u(at + 2, 2) == 3:  # Orientation, a SHORT: its value sits in the entry
            return data[: at + 8] + (1).to_bytes(2, order) + data[at + 10 :]
    return None


def _read_image(src: Path, data: bytes, header: Header | None) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """The picture in ``src`` (whose bytes are ``data``) upright (turned by its EXIF orientation)
    as RGB, uint8 or uint16 as stored, its alpha channel (same orientation) or None, and whether
    it was stored as grey."""
    bmp16 = _read_bmp16(src)
    if bmp16 is not None:
        return bmp16, None, False
    orientation = header.orientation if header else 1
    stored = tiff_as_stored(data) if header is not None and header.format == "TIFF" and orientation != 1 else None
    if stored is not None:
        raw = cv2.imdecode(np.frombuffer(stored, np.uint8), cv2.IMREAD_UNCHANGED)
    else:
        raw = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)  # every channel and bit, as stored (not turned)
    if raw is None:
        refuse_video(src)
        raise LivesharpError(f"{src}: not an image OpenCV can read; pass a PNG or JPEG file")
    raw = _upright(raw if raw.ndim == 3 else raw[..., None], orientation)
    if raw.dtype in (np.float32, np.float64):  # TIFF's float samples run from 0 to 1
        log.warning(f"{src.name} has {raw.dtype} samples: read as 0..1 and written as 8-bit")
        raw = np.clip(np.nan_to_num(raw[..., :3]) * 255 + 0.5, 0, 255).astype(np.uint8)
    elif raw.dtype not in (np.uint8, np.uint16):
        raise LivesharpError(f"{src}: {raw.dtype} samples, which livesharp does not read; save it with 8 or 16 bits per channel")
    grey, alpha = raw.shape[2] <= 2, raw[..., -1] if raw.shape[2] in (2, 4) else None  # grey(+alpha) or BGR(A)
    colour = cv2.cvtColor(raw[..., 0], cv2.COLOR_GRAY2RGB) if grey else cv2.cvtColor(raw[..., :3], cv2.COLOR_BGR2RGB)
    return colour, None if alpha is None else np.ascontiguousarray(alpha), grey


def _upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """``a`` (H, W, C) as stored, turned as EXIF's ``orientation`` says: Pillow turns a map of
    pixel indices, which then moves every channel, of any depth, alike."""
    if orientation == 1:
        return a
    h, w = a.shape[:2]
    where = Image.fromarray(np.arange(h * w, dtype=np.int32).reshape(h, w))
    where.getexif()[ExifTags.Base.Orientation] = orientation
    return a.reshape(h * w, -1)[np.asarray(ImageOps.exif_transpose(where))]


def _picture_size(src: Path) -> str:
    """'48 MP ' (or '640x480 ' below a megapixel) for the picture ``src`` holds, from its
    header alone (no pixels); '' where Pillow cannot tell."""
    try:
        with warnings.catch_warnings(), Image.open(src) as im:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            w, h = im.size
    except (OSError, ValueError, MemoryError, Image.DecompressionBombError):
        return ""
    mp = w * h / 1e6
    return f"{w}x{h} " if mp < 1 else f"{mp:.1f} MP " if mp < 10 else f"{mp:.0f} MP "


def _memory_in_one_line(process):
    """``process_image`` with memory that runs out (numpy's MemoryError, OpenCV's "Insufficient
    memory", a runtime's allocation failure, wherever the picture's size first meets the limit)
    said in one line naming the picture's size, what was left, and what to do. The output is
    left as it was: ``published`` writes it only once complete."""

    @functools.wraps(process)
    def wrapper(*args, **kwargs):
        try:
            return process(*args, **kwargs)
        except (MemoryError, OutOfMemory, cv2.error) as e:
            if not allocation_failed(e):
                raise
            src = Path(args[0] if args else kwargs["src"])
            raise out_of_memory(f"sharpen this {_picture_size(src)}picture", "scale it down first") from None

    return wrapper


@_memory_in_one_line
def process_image(
    src: str | Path,
    dst: str | Path,
    *,
    model: str | Path | Student | None = None,
    device: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    strength: float | None = None,
    detail: bool | None = None,
    side_by_side: bool = False,
    overwrite: bool = False,
    sharpener: Sharpener | None = None,
    tile: int = IMAGE_TILE,
) -> Path:
    """Sharpen one still image (PNG, JPEG, ...); the output type follows ``dst``'s suffix.

    The model options and ``sharpener`` are as for ``process_file``. A picture larger than
    ``tile`` pixels a side is computed in overlapping tiles of that side (``tiling.tiled``), so
    the network's memory stays that of one tile whatever the picture's size; the detail stage's
    amounts are the whole picture's (``Sharpener.detail_from``)."""
    src, dst = Path(src), Path(dst)
    options = dict(model=model, device=device, strength=strength, backend=backend, precision=precision, detail=detail)
    if sharpener is not None:
        open_sharpener(sharpener, **options)  # both given: refused before any work
    check_input(src, "picture")
    check_output(src, dst, overwrite, IMAGE_SUFFIXES)
    data = src.read_bytes()
    # By content: a JPEG named .jfif, .png or nothing is still one. libjpeg would print a warning
    # and fill the missing part with grey; libpng prints an error of its own before OpenCV fails.
    for format_name, complete in (("JPEG", jpeg_is_complete), ("PNG", png_is_complete)):
        if not complete(data):
            raise LivesharpError(f"{src}: truncated {format_name}: the file ends before the picture does; copy or export it again")
    header = _header(src)
    full, alpha, grey = _read_image(src, data, header)
    key = png_grey_key(data) if grey and alpha is None else None
    if key is not None:  # as alpha: opaque but where the key is
        alpha = np.where(full[..., 0] == key, 0, np.iinfo(full.dtype).max).astype(full.dtype)
    kind = dst.suffix.lower()
    # What OpenCV does not carry: the colour profile is put back where livesharp can (PNG, JPEG);
    # the rest, and whatever cannot be put back, is named once.
    icc, others = image_metadata(data)
    if icc is None and header is not None and header.format == "TIFF":  # (image_metadata reads JPEG, PNG and WebP)
        icc = header.info.get("icc_profile") or None
    colour = png_colour_chunks(data)  # copied into a PNG; what they say is lost in other kinds
    if kind != ".png" and not icc and any(k in (b"gAMA", b"cHRM") for k, _ in colour):
        log.warning(f"{src.name}: its gamma and colour primaries (PNG gAMA/cHRM) cannot be stored in {kind} and are dropped: colours may look different; write .png to keep them")
    if icc and kind not in (".png", ".jpg", ".jpeg"):
        log.warning(f"{src.name}: its colour profile (ICC) cannot be stored in {kind} by livesharp and is dropped: colours may look different; write .png or .jpg to keep it")
    if others:
        log.warning(f"{src.name}: not copied: {', '.join(others)}")
    dpi = image_dpi(header)
    if dpi and (kind not in (".png", ".jpg", ".jpeg", ".tif", ".tiff") or side_by_side):
        why = "a side-by-side comparison has none" if side_by_side else f"livesharp cannot store it in {kind}; write .png, .jpg or .tiff to keep it"
        log.warning(f"{src.name}: its resolution ({dpi[0]:.0f} dpi) is not copied: {why}")
        dpi = None
    with contextlib.suppress(cv2.error):
        count = cv2.imcount(str(src))
        if count > 1:
            what = "pages" if data[:4] in (b"II*\x00", b"MM\x00*") else "frames"
            hint = "" if what == "pages" else "; livesharp file sharpens every frame into a video"
            log.warning(f"{src.name} has {count} {what}: only the first is sharpened{hint}")
    deep = full.dtype == np.uint16
    rgb = _to_8bit(full) if deep else full  # what the network sees
    sharpener, own = open_sharpener(sharpener, **options)
    try:
        with sharpener.detail_from(rgb):
            out = tiled(sharpener.sharpen, rgb, tile, IMAGE_OVERLAP, sharpener.multiple)
    finally:
        if own:
            sharpener.close()
    if deep and (side_by_side or kind not in DEEP_SUFFIXES):
        why = "a side-by-side comparison is written 8-bit" if side_by_side else f"{kind} stores 8 bits per channel; write .png or .tiff to keep 16"
        log.warning(f"{src.name} has 16 bits per channel: {why}")
        deep = False
    if deep:
        out = _add_detail_16bit(full, rgb, out)
    if side_by_side:
        out = ops.side_by_side(rgb, out, ("input", sharpener.name))
        alpha = None if alpha is None else np.hstack([_to_8bit(alpha) if alpha.dtype == np.uint16 else alpha] * 2)
    if alpha is not None:
        if kind not in ALPHA_SUFFIXES:
            log.warning(f"{src.name} has transparency (an alpha channel) and {kind} cannot store it: it is dropped; write .png to keep it")
        else:  # sharpened colour, the alpha as it was
            if alpha.dtype != out.dtype:
                alpha = _to_8bit(alpha) if out.dtype == np.uint8 else alpha.astype(np.uint16) * 257
            out = np.dstack([out, alpha])
    if grey and out.shape[2] == 3 and not side_by_side:  # written as it came: one channel, not three alike
        bgr = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    else:
        bgr = cv2.cvtColor(out, cv2.COLOR_RGBA2BGRA if out.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    tiff_dpi = [cv2.IMWRITE_TIFF_RESUNIT, 2, cv2.IMWRITE_TIFF_XDPI, round(dpi[0]), cv2.IMWRITE_TIFF_YDPI, round(dpi[1])] \
        if dpi and kind in (".tif", ".tiff") else []
    # Encoded in memory, tagged, then written once: a failed write names its cause (a full disk),
    # where OpenCV's own writer only says false (and libpng prints a line of its own).
    ok, encoded = cv2.imencode(kind, bgr, tiff_dpi)
    if not ok:
        raise LivesharpError(f"{dst}: OpenCV could not encode the picture as {kind}; write .png instead")
    picture = encoded.tobytes()
    if dpi and not tiff_dpi:  # before the profile: JPEG's density sits in the JFIF segment the profile goes after
        stated = with_dpi(picture, dpi)
        if stated is None:  # (OpenCV's PNG and JPEG always have where it goes)
            log.warning(f"{src.name}: its resolution ({dpi[0]:.0f} dpi) could not be written into {kind} and is not copied")
        else:
            picture = stated
    written = "GRAY" if bgr.ndim == 2 else "RGB"
    if icc and kind in (".png", ".jpg", ".jpeg") and icc_colour_space(icc) != written:
        # A profile describes one kind of pixel: on others it is wrong (libpng rejects the file).
        log.warning(f"{src.name}: its colour profile (ICC) is for {icc_colour_space(icc)} pixels and the output's are {written}: it is dropped, colours may look different")
    elif icc and kind in (".png", ".jpg", ".jpeg"):
        tagged = with_icc(picture, icc)
        if tagged is None:
            log.warning(f"{src.name}: its colour profile (ICC) is too large for {kind} and is dropped: colours may look different")
        else:
            picture = tagged
    if colour and kind == ".png":
        picture = with_png_chunks(picture, colour)
    with published(dst, overwrite) as tmp:
        try:
            tmp.write_bytes(picture)
        except OSError as e:
            raise LivesharpError(f"{dst}: could not write the image ({e.strerror}); check the folder and free space") from None
    return dst
