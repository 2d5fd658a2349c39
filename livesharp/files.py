"""Writing files so that a crash, Ctrl-C or a full disk never leaves a half-written one.

Every output livesharp and its training write (videos, images, exported graphs, checkpoints,
cache entries) goes through ``atomic_output``: written under a hidden name beside the target,
renamed over it only once complete. No heavy imports here.
"""

from __future__ import annotations

import itertools
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

# Unique within this process; the PID makes the name unique across processes, so two writers of
# one target (a training run and the cache filler, say) never share a temp file.
_serial = itertools.count()


def partial_path(path: str | Path) -> Path:
    """The hidden temp name ``atomic_output`` writes ``path`` under: same folder, same suffix
    (formats are chosen by suffix), and named for livesharp and this process.

    >>> partial_path("out/talk.mp4").name.startswith(".talk.livesharp-partial-")
    True
    >>> partial_path("out/talk.mp4").suffix
    '.mp4'
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.livesharp-partial-{os.getpid()}-{next(_serial)}{path.suffix}")


@contextmanager
def atomic_output(path: str | Path, companions: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write to; on success rename it over ``path``.

    If the block raises (Ctrl-C included), the temp file is removed and ``path`` is untouched.
    ``companions`` are suffixes of files written beside the temp one under its stem, such as the
    ``.bin`` OpenVINO writes beside an ``.xml``: they are renamed (first) and cleaned up with it.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_output(folder / "a.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> [p.name for p in folder.iterdir()], (folder / "a.txt").read_text()
    (['a.txt'], 'done')
    """
    path = Path(path)
    tmp = partial_path(path)
    extra = [(tmp.with_suffix(s), path.with_suffix(s)) for s in companions]
    try:
        yield tmp
        # The main file last: once it exists under its name, everything it needs does too.
        for src, dst in extra:
            os.replace(src, dst)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, *(src for src, _ in extra)):
            leftover.unlink(missing_ok=True)
