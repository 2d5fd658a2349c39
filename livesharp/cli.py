"""The command line: each command is a thin shim over one library function."""

from __future__ import annotations

import logging

import click

from . import __version__
from .errors import LivesharpError, out_of_memory
from .settings import DEFAULT_MODEL, FILE_BATCH, IMAGE_TILE, SCALES, apply_thread_policy

BACKEND_HELP = ("Inference runtime. auto: torch on CUDA; on the CPU OpenVINO (in the base install), "
                "else ONNX Runtime (livesharp[onnx]), else torch (livesharp[torch]).")
X264_PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]
MODEL_HELP = ("tiny (the shipped weights), unsharp (classical baseline, no network), a graph PATH.onnx "
              "(livesharp export ... --io uint8), or a checkpoint PATH.pt (needs livesharp[torch])")


class _Group(click.Group):
    """Turns the library's user-facing errors into one line and an exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (LivesharpError, MemoryError) as e:
            if isinstance(e, MemoryError):  # numpy's, where no step named what it was doing
                e = out_of_memory("go on", "give livesharp smaller pictures or videos")
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo(f"interrupted: {_what_was_left(ctx)}", err=True)
            ctx.exit(130)


def _note_output(path: str) -> None:
    """Remember the output a command writes, and what stood at its name before: an interrupt that
    lands after the output was published (while the runtime shuts down) must not say that
    nothing was written. ``Context.meta`` is shared with the group that reports interrupts."""
    from pathlib import Path

    click.get_current_context().meta["livesharp.output"] = (Path(path), _identity(Path(path)))


def _identity(path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _what_was_left(ctx) -> str:
    noted = ctx.meta.get("livesharp.output")
    if noted is not None and _identity(noted[0]) not in (None, noted[1]):
        return f"stopped after {noted[0]} was written complete"
    return "stopped, and no partial output was left behind"


class _WarningLine(logging.Handler):
    def emit(self, record):
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


PRECISION_HELP = ("auto: fp16 on CUDA; on the CPU under OpenVINO, where the model ships int8 weights that passed its "
                  "quality check (the default tiny does), whichever of int8 and the float graph (bf16 where the CPU computes "
                  "it natively, else fp32) is faster here, timed once per CPU, model and frame size and cached. "
                  "fp32: full precision everywhere, slower. int8: OpenVINO's int8, or an error saying why not.")


def precision_option(f):
    return click.option("--precision", type=click.Choice(["auto", "fp32", "int8"]), default="auto", show_default=True, help=PRECISION_HELP)(f)


def backend_option(f):
    f = precision_option(f)
    return click.option("--backend", type=click.Choice(["auto", "torch", "onnx", "openvino"]), default="auto", show_default=True, help=BACKEND_HELP)(f)


def model_options(f):
    f = backend_option(f)
    f = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True, help="Where the network runs; auto picks CUDA when torch sees a GPU.")(f)
    f = click.option("--detail/--no-detail", default=True, show_default=True,
                     help="After the network, the model's detail stage (where it ships one, as tiny does): per-frame amounts of "
                          "its correction and of three fine-detail bands, read from how soft the frame is. It sharpens "
                          "lens blur and defocus that the network leaves, leaves sharp frames alone, and takes no detail of 5 px or more away (finer, it may cut codec noise).")(f)
    f = click.option("--strength", type=click.FloatRange(0, 2), default=1.0, show_default=True, help="0 = passthrough, 1 = the model, up to 2 = twice its change: a crisper look where the model changes little (webcam footage often).")(f)
    f = click.option("--model", "model", default=DEFAULT_MODEL, show_default=True, help=MODEL_HELP)(f)
    f = click.option("--side-by-side", is_flag=True, help="Write input | sharpened, twice as wide, labelled.")(f)
    return f


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog="""\b
Examples:
  livesharp demo                              # see it work on a clip shipped with livesharp
  livesharp cam --virtual                     # sharpen your webcam for Zoom/Meet/Teams
  livesharp file talk.mp4 talk_sharp.mp4 --side-by-side
  livesharp image photo.jpg photo_sharp.png --model unsharp
""")
@click.version_option(__version__, "--version", "-V", prog_name="livesharp")
def cli():
    """Sharpen live and recorded video with a small real-time network."""
    # Every command imports torch inside itself, after this: the policy only works before.
    apply_thread_policy()
    _print_log_lines_until_the_command_ends(click.get_current_context())


def _print_log_lines_until_the_command_ends(ctx: click.Context) -> None:
    """The library's log records print as ``warning: ...`` lines while the command runs.

    The logger's state is put back when the command ends, so a command run in-process (a test,
    a notebook) leaves the caller's logging as it found it."""
    logger = logging.getLogger("livesharp")
    before = (logger.level, logger.propagate)
    handler = _WarningLine()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def restore():
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]

    ctx.call_on_close(restore)


@cli.command("file", epilog="""\b
Examples:
  livesharp file in.mp4 out.mp4
  livesharp file in.mp4 compare.mp4 --side-by-side --model unsharp
  livesharp file in.mkv out.mkv --crf 16 --preset slow --overwrite
""")
@click.argument("input", type=click.Path(dir_okay=True, path_type=str))
@click.argument("output", type=click.Path(path_type=str))
@model_options
@click.option("--batch", type=click.IntRange(1, 64), default=FILE_BATCH, show_default=True, help="Most frames per inference call (filled only with frames already decoded).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--crf", type=click.IntRange(0, 51), default=18, show_default=True, help="H.264 quality: lower is better and larger; 18 looks lossless to most eyes.")
@click.option("--preset", type=click.Choice(X264_PRESETS), default="medium", show_default=True, help="H.264 speed/size trade-off.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
def file_cmd(input, output, side_by_side, model, strength, detail, device, backend, precision, batch, overwrite, crf, preset, progress):
    """Sharpen a video file: H.264 out, audio copied, timing and rotation kept.

    The output is written to a hidden temporary file beside OUTPUT and renamed only when
    complete; the input is never modified.
    """
    from pathlib import Path

    from .io import OUTPUT_FORMATS, check_input, check_output, refuse_still_image

    # A wrong path or name is told at once, before torch and the model load (seconds, ~700 MB).
    check_input(Path(input))
    refuse_still_image(Path(input))  # before the output's name: photo.jpg -> photo_sharp.jpg is a still, not a bad video name
    check_output(Path(input), Path(output), overwrite, OUTPUT_FORMATS)
    _note_output(output)
    from .pipeline import process_file, stop_on_term_and_hup

    with stop_on_term_and_hup():
        r = process_file(input, output, model=model, device=device, backend=backend, precision=precision, strength=strength, detail=detail, side_by_side=side_by_side,
                         batch=batch, overwrite=overwrite, crf=crf, preset=preset, progress=progress)
    click.echo(f"wrote {r.output} ({r.frames} frames, {r.width}x{r.height}) in {r.seconds:.1f} s, {r.fps:.1f} frames/s", err=True)


IMAGE_HELP = f"""Sharpen a still image (PNG, JPEG, BMP, TIFF, WebP).

A picture over {IMAGE_TILE} pixels a side is computed in overlapping tiles, so memory grows by
about 10 bytes per pixel of it, not the network's 50 (48 MP: 0.9 GB in all under OpenVINO).
Each tile sees only its part of the picture, which the network averages over, so the result
differs slightly from one pass over the whole (an 11 MP photo: 0.35 grey levels on average,
3 % of values by more than one)."""


@cli.command("image", help=IMAGE_HELP, epilog="""\b
Examples:
  livesharp image photo.jpg photo_sharp.png
  livesharp image scan.png compare.png --side-by-side --strength 1.5
""")
@click.argument("input", type=click.Path(path_type=str))
@click.argument("output", type=click.Path(path_type=str))
@model_options
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def image_cmd(input, output, side_by_side, model, strength, detail, device, backend, precision, overwrite):
    """Sharpen a still image (PNG, JPEG, BMP, TIFF, WebP)."""
    from pathlib import Path

    from .io import IMAGE_SUFFIXES, check_input, check_output

    check_input(Path(input), "picture")  # before torch and the model load
    check_output(Path(input), Path(output), overwrite, IMAGE_SUFFIXES)
    _note_output(output)
    from .pipeline import process_image, stop_on_term_and_hup

    with stop_on_term_and_hup():
        out = process_image(input, output, model=model, device=device, backend=backend, precision=precision, strength=strength, detail=detail,
                            side_by_side=side_by_side, overwrite=overwrite)
    click.echo(f"wrote {out}", err=True)




def _check_stats(path: str, camera: str, overwrite: bool) -> None:
    """--stats must name a file that can be created: said at once, before the camera opens and
    the model loads, not after. Like every output: never the input, never an existing file
    without --overwrite."""
    import tempfile
    from pathlib import Path

    from .io import camera_file, check_output

    if Path(path).is_dir():
        raise LivesharpError(f"--stats {path}: is a directory; name a file in it, e.g. {Path(path) / 'stats.jsonl'}")
    try:  # os.access says yes to root everywhere; creating a file is the real test
        tempfile.TemporaryFile(dir=Path(path).parent).close()
    except OSError as e:
        raise LivesharpError(f"--stats {path}: cannot write it ({e.strerror}); check the folder") from None
    check_output(camera_file(camera), Path(path), overwrite, None)


def _size(value: str) -> tuple[int, int]:
    try:
        w, h = value.lower().split("x")
        w, h = int(w), int(h)
    except ValueError:
        raise click.BadParameter(f"{value!r}: write it as WIDTHxHEIGHT, e.g. 1280x720") from None
    if w < 2 or h < 2:
        raise click.BadParameter(f"{value!r}: width and height must be at least 2, e.g. 1280x720")
    return w, h


@cli.command("cam", epilog="""\b
Examples:
  livesharp cam --virtual                     # then pick "LiveSharp" as the camera in Zoom/Meet/Teams
  livesharp cam --camera 1 --size 640x480 --preview
  livesharp cam --camera clip.mp4 --no-preview --max-frames 300 --stats s.jsonl
""")
@click.option("--camera", default="0", show_default=True, help="Camera index, /dev/videoN, or a video FILE played in real time as a stand-in webcam.")
@click.option("--size", default="1280x720", show_default=True, help="Capture size to ask the camera for (WIDTHxHEIGHT).")
@click.option("--fps", type=click.FloatRange(1, 240), default=30, show_default=True, help="Capture and virtual-camera frame rate.")
@click.option("--virtual", is_flag=True, help='Publish to a virtual camera (needs pip install ".[virtualcam]", GPL-2.0; setup per OS: livesharp devices).')
@click.option("--preview/--no-preview", default=None, help="Preview window with HUD and hotkeys (default: on when a display exists).")
@model_options
@click.option("--max-frames", type=click.IntRange(1), default=None, help="Stop after this many output frames.")
@click.option("--stats", type=click.Path(), default=None, help="Write per-frame timings as JSON lines here.")
@click.option("--loop", is_flag=True, help="With --camera FILE: start over at the end.")
@click.option("--overwrite", is_flag=True, help="Replace the --stats file if it exists.")
@click.option("--scale", type=click.Choice(["auto", *(f"{s:g}" for s in SCALES)]), default="auto", show_default=True,
              help="Run the network on the frame shrunk by this and add what it changed, enlarged, to the full frame. "
                   "auto: the largest scale that keeps up with the frame rate on this machine, adjusted while running.")
def cam_cmd(camera, size, fps, virtual, preview, side_by_side, model, strength, detail, device, backend, precision, max_frames, stats, loop, overwrite,
            scale):
    """Sharpen a webcam live: to a virtual camera for video calls and/or a preview window.

    Hotkeys in the preview: q/Esc quit, +/- strength, space sharpening on/off,
    s side-by-side, h hide the HUD. Ctrl-C stops cleanly.
    """
    import signal

    if stats is not None:
        _check_stats(stats, camera, overwrite)  # before the heavy imports below
    if virtual and preview is not True:
        # A missing extra or device is said now, not after the camera opened and the model warmed
        # up; with --preview asked for, the session goes on with the preview and a warning instead.
        from .sinks import require_virtual_camera

        require_virtual_camera()
    from .live import run_live

    # SIGTERM (a service manager, `kill`) ends the session like Ctrl-C: threads stop, camera closes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # run_live's LivesharpError becomes the one error: line in _Group.
    result = run_live(camera, size=_size(size), fps=fps, loop=loop, virtual=virtual, preview=preview, side_by_side=side_by_side,
                      model=model, device=device, backend=backend, precision=precision, strength=strength, detail=detail,
                      max_frames=max_frames, stats=stats, overwrite=overwrite, status=lambda line: click.echo(line, err=True), scale=scale)
    click.echo(result.summary(), err=True)


@cli.command("export", epilog="""\b
Examples:
  livesharp export tiny tiny.onnx
  livesharp export tiny tiny.xml --format openvino        # writes tiny.xml + tiny.bin
  livesharp export runs/mine/best.pt mine.onnx --io uint8
""")
@click.argument("model")
@click.argument("output", type=click.Path(path_type=str))
@click.option("--format", "fmt", type=click.Choice(["onnx", "openvino"]), default=None, help="Default: from OUTPUT's suffix (.onnx or .xml).")
@click.option("--io", type=click.Choice(["float", "uint8"]), default="float", show_default=True,
              help="float: (N,3,H,W) RGB in [0,1] like the torch model; uint8: (N,H,W,3) RGB frames in and out.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def export_cmd(model, output, fmt, io, overwrite):
    """Export MODEL (tiny, small or a checkpoint) to ONNX or OpenVINO IR for use elsewhere
    (needs livesharp[torch]).

    Height, width and batch are dynamic; sides must be at least 32 pixels. The exported output
    matches the torch model's within 1e-3.
    """
    from pathlib import Path

    from .engine import export_model

    if fmt is None:
        fmt = {".onnx": "onnx", ".xml": "openvino"}.get(Path(output).suffix.lower())
        if fmt is None:
            raise LivesharpError(f"{output}: name it .onnx (ONNX) or .xml (OpenVINO IR), or pass --format")
    out = export_model(model, output, fmt=fmt, io=io, overwrite=overwrite)
    extra = f" and {out.with_suffix('.bin').name}" if fmt == "openvino" else ""
    click.echo(f"wrote {out}{extra} ({fmt}, {io} input/output)", err=True)


@cli.command("bench", epilog="""\b
Examples:
  livesharp bench                                   # 1280x720, every backend installed
  livesharp bench --size 640x480 --size 1920x1080 --model unsharp
  livesharp bench --backend openvino --batch 4 --json > bench.json
""")
@click.option("--size", "sizes", multiple=True, default=["1280x720"], show_default=True, help="Frame size WIDTHxHEIGHT; repeat for several.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help=MODEL_HELP)
@click.option("--backend", "backends", multiple=True, type=click.Choice(["torch", "onnx", "openvino"]),
              help="Repeat for several (default: every one installed for the device). torch, where installed, is always measured: it is the reference.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True, help="Where torch runs.")
@click.option("--batch", type=click.IntRange(1, 64), default=1, show_default=True, help="Frames per inference call in the model-only columns (1 = live).")
@click.option("--file-batch", type=click.IntRange(1, 64), default=FILE_BATCH, show_default=True,
              help="Most frames per inference call in the end-to-end columns (default: what livesharp file uses).")
@click.option("--frames", type=click.IntRange(2), default=60, show_default=True, help="Length of the test clip.")
@click.option("--runs", type=click.IntRange(1), default=3, show_default=True, help="Report the median of this many runs.")
@click.option("--preset", type=click.Choice(X264_PRESETS), default="medium", show_default=True, help="libx264 preset for the encode and end-to-end figures (medium: what livesharp file uses by default).")
@precision_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout instead of tables.")
def bench_cmd(sizes, model, backends, device, batch, file_batch, frames, runs, preset, precision, as_json):
    """Measure speed on this machine: decode, upload, inference, download and encode per frame,
    end-to-end FPS, and how close each backend gets to the decode+encode floor.

    The clip is made from the demo footage at each size; progress goes to stderr.
    """
    import json

    from .bench import format_table, run_bench

    sizes = [_size(s) for s in sizes]
    for w, h in sizes:  # the test clip is H.264 yuv420p
        if w % 2 or h % 2:
            raise click.BadParameter(f"'{w}x{h}': bench needs even sides (H.264 yuv420p), e.g. {w + w % 2}x{h + h % 2}", param_hint="'--size'")
    result = run_bench(sizes, model=model, backends=backends or None, batch=batch, file_batch=file_batch, frames=frames,
                       runs=runs, device=device, preset=preset, precision=precision, log=lambda m: click.echo(m, err=True))
    click.echo(json.dumps(result, indent=2) if as_json else format_table(result))


@cli.command("devices", epilog="""\b
Example:
  livesharp devices
""")
def devices_cmd():
    """List cameras and the virtual-camera backend's status."""
    from .sinks import virtual_camera_status
    from .sources import list_cameras

    cams = list_cameras()
    click.echo("cameras:")
    for c in cams:
        click.echo(f"  {c.index}  {c.path}  {c.name}")
    if not cams:
        click.echo("  none found (use --camera FILE to run on a video)")
    click.echo(f"virtual camera: {virtual_camera_status()}")


@cli.command("demo", epilog="""\b
Examples:
  livesharp demo
  livesharp demo --out /tmp/ls --no-preview
""")
@click.option("--out", "out_dir", default="livesharp-demo", show_default=True, type=click.Path(file_okay=False), help="Folder for the side-by-side video and the before/after PNG.")
@click.option("--preview/--no-preview", default=None, help="Show frames as they are processed (default: when a display exists).")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help=MODEL_HELP)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--frames", type=click.IntRange(1), default=None, help="Only the first N frames of the 73.")
@backend_option
def demo_cmd(out_dir, preview, model, device, frames, backend, precision):
    """See it work with nothing to set up: sharpen a short real clip shipped with livesharp
    (GoPro footage, CC BY 4.0), and measure the result against the clip's sharp frames."""
    import sys

    from . import sinks
    from .demo import run_demo

    terminal = sys.stderr.isatty()  # click.get_text_stream is deprecated from Click 8.5 (what a fresh install gets)

    def progress(i, n):  # on a terminal one line counting up; in a log every 10th frame and the last
        if terminal:
            click.echo(f"\rframe {i}/{n}", err=True, nl=i == n)
        elif i % 10 == 0 or i == n:
            click.echo(f"frame {i}/{n}", err=True)

    window = sinks.PreviewWindow() if (preview if preview is not None else sinks.has_display()) else None
    try:
        r = run_demo(out_dir, model=model, device=device, preview=window, frames=frames, backend=backend, precision=precision,
                     status=lambda line: click.echo(line, err=True), progress=progress)
    finally:
        if window:
            window.close()
    click.echo(f"wrote {r.video} (input | {model}) and {r.image}")
    click.echo(f"PSNR against the sharp frames: input {r.psnr_input:.2f} dB -> output {r.psnr_output:.2f} dB ({r.psnr_output - r.psnr_input:+.2f} dB)")
    click.echo(r.verdict)
