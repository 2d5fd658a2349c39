"""The command line: each command is a thin shim over one library function."""

from __future__ import annotations

import logging
import sys

import click

from . import __version__
from .engine import DEFAULT_MODEL
from .errors import LivesharpError

MODEL_HELP = "tiny | small (shipped weights), unsharp (classical baseline, no network), or a checkpoint path"


class _Group(click.Group):
    """Turns the library's user-facing errors into one line and an exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LivesharpError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: stopped, and no partial output was left behind", err=True)
            ctx.exit(130)


class _WarningLine(logging.Handler):
    def emit(self, record):
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


def model_options(f):
    f = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True, help="Where the network runs; auto picks CUDA when torch sees a GPU.")(f)
    f = click.option("--strength", type=click.FloatRange(0, 2), default=1.0, show_default=True, help="0 = passthrough, 1 = the model, up to 2 = extrapolated detail.")(f)
    f = click.option("--model", "model", default=DEFAULT_MODEL, show_default=True, help=MODEL_HELP)(f)
    f = click.option("--side-by-side", is_flag=True, help="Write input | sharpened, twice as wide, labelled.")(f)
    return f


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog="""\b
Examples:
  livesharp file talk.mp4 talk_sharp.mp4 --side-by-side
  livesharp image photo.jpg photo_sharp.png --model unsharp
""")
@click.version_option(__version__, "--version", "-V", prog_name="livesharp")
def cli():
    """Sharpen live and recorded video with a small real-time network."""
    logger = logging.getLogger("livesharp")
    if not any(isinstance(h, _WarningLine) for h in logger.handlers):
        logger.addHandler(_WarningLine())
    logger.setLevel(logging.INFO)
    logger.propagate = False


@cli.command("file", epilog="""\b
Examples:
  livesharp file in.mp4 out.mp4
  livesharp file in.mp4 compare.mp4 --side-by-side --model unsharp
  livesharp file in.mkv out.mkv --crf 16 --preset slow --overwrite
""")
@click.argument("input", type=click.Path(dir_okay=True, path_type=str))
@click.argument("output", type=click.Path(path_type=str))
@model_options
@click.option("--batch", type=click.IntRange(1, 64), default=4, show_default=True, help="Most frames per inference call (filled only with frames already decoded).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--crf", type=click.IntRange(0, 51), default=18, show_default=True, help="H.264 quality: lower is better and larger; 18 looks lossless to most eyes.")
@click.option("--preset", type=click.Choice(["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]), default="medium", show_default=True, help="H.264 speed/size trade-off.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
def file_cmd(input, output, side_by_side, model, strength, device, batch, overwrite, crf, preset, progress):
    """Sharpen a video file: H.264 out, audio copied, timing and rotation kept.

    The output is written to a hidden temporary file beside OUTPUT and renamed only when
    complete; the input is never modified.
    """
    from .pipeline import process_file

    r = process_file(input, output, model=model, device=device, strength=strength, side_by_side=side_by_side,
                     batch=batch, overwrite=overwrite, crf=crf, preset=preset, progress=progress)
    click.echo(f"wrote {r.output} ({r.frames} frames, {r.width}x{r.height}) in {r.seconds:.1f} s, {r.fps:.1f} frames/s", err=True)


@cli.command("image", epilog="""\b
Examples:
  livesharp image photo.jpg photo_sharp.png
  livesharp image scan.png compare.png --side-by-side --strength 1.5
""")
@click.argument("input", type=click.Path(path_type=str))
@click.argument("output", type=click.Path(path_type=str))
@model_options
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def image_cmd(input, output, side_by_side, model, strength, device, overwrite):
    """Sharpen a still image (PNG, JPEG, BMP, TIFF, WebP)."""
    from .pipeline import process_image

    out = process_image(input, output, model=model, device=device, strength=strength, side_by_side=side_by_side, overwrite=overwrite)
    click.echo(f"wrote {out}", err=True)


