"""Writing files so that a crash, Ctrl-C or a full disk never leaves a half-written one.

Every output livesharp and its training write (videos, images, exported graphs, checkpoints,
cache entries) goes through ``atomic_output``: written under a hidden name beside the target,
renamed over it only once complete. No heavy imports here.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

# Unique within this process; the PID makes the name unique across processes, so two writers of
# one target (a training run and the cache filler, say) never share a temp file.
_serial = itertools.count()


NAME_MAX = 255  # bytes in one file name, on every common file system


def _sibling(path: Path, lead: str, middle: str) -> Path:
    """``path``'s sibling named lead + stem + middle + suffix, the stem shortened (at a character
    boundary) so the name fits in NAME_MAX bytes: a legal 240-character name must stay usable.

    >>> len(_sibling(Path("x" * 250 + ".mp4"), ".", ".livesharp-partial-1-0").name)
    255
    """
    room = NAME_MAX - len((lead + middle + path.suffix).encode())
    stem = path.stem.encode()[: max(0, room)].decode(errors="ignore")
    return path.with_name(f"{lead}{stem}{middle}{path.suffix}")


def partial_path(path: str | Path) -> Path:
    """The hidden temp name ``atomic_output`` writes ``path`` under: same folder, same suffix
    (formats are chosen by suffix), and named for livesharp and this process.

    >>> partial_path("out/talk.mp4").name.startswith(".talk.livesharp-partial-")
    True
    >>> partial_path("out/talk.mp4").suffix
    '.mp4'
    """
    return _sibling(Path(path), ".", f".livesharp-partial-{os.getpid()}-{next(_serial)}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process, or a platform without signals: assume it lives
        return True
    return True


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Remove the temp files of ``path`` that runs killed outright (SIGKILL, a power cut) left
    behind: those whose process is gone. Returns what was removed.

    Only exact ``partial_path`` names of this target are considered, so another target's temp
    file, and one whose writer still runs, are never touched.
    """
    path = Path(path)
    pattern = re.compile(r"\.livesharp-partial-(\d+)-(\d+)" + re.escape(path.suffix) + "$")
    removed = []
    try:
        names = [p.name for p in path.parent.iterdir()]
    except OSError:
        return removed
    for name in names:
        m = pattern.search(name)
        if not m or not name.startswith("."):
            continue
        pid = int(m.group(1))
        if _sibling(path, ".", f".livesharp-partial-{pid}-{m.group(2)}").name != name or _alive(pid):
            continue
        try:
            (path.parent / name).unlink()
            removed.append(path.parent / name)
        except OSError:
            pass
    return removed


class OutputAppeared(FileExistsError):
    """The target came into being while we wrote (another program, another run): it was not
    replaced, and the finished result was kept under ``kept``."""

    def __init__(self, path: Path, kept: Path):
        super().__init__(errno.EEXIST, "appeared while writing", str(path))
        self.path, self.kept = path, kept


def kept_path(path: Path) -> Path:
    """Where a finished result goes when ``path`` may not be replaced: a name that says so.

    >>> kept_path(Path("out/talk.mp4")).name
    'talk.livesharp-not-replaced.mp4'
    """
    return _sibling(path, "", ".livesharp-not-replaced")


def publish_new(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if no file has it; FileExistsError otherwise.

    A hard link fails if the target exists, so nothing that appeared in the meantime is ever
    replaced (a rename would replace it). Where the file system has no hard links, an exclusive
    create claims the name first.
    """
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))  # FileExistsError if taken
        os.replace(tmp, path)
        return
    tmp.unlink()


def _keep(tmp: Path, path: Path) -> Path:
    """Publish ``tmp`` under the first free one of kept_path(path), ...-2, ...-3: never over a file."""
    for n in itertools.count(1):
        kept = _sibling(path, "", ".livesharp-not-replaced" + (f"-{n}" if n > 1 else ""))
        try:
            publish_new(tmp, kept)
            return kept
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def _keep_mode(old: Path, new: Path) -> None:
    """Give ``new`` the permissions of the file ``old`` it is about to replace: a private file
    (0600) replaced by a new one must not come out readable by everyone. Nothing to keep where
    ``old`` is not a regular file (a symlink is replaced, not followed)."""
    try:
        st = os.lstat(old)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode):
        os.chmod(new, stat.S_IMODE(st.st_mode))


@contextmanager
def atomic_output(path: str | Path, companions: Sequence[str] = (), replace: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write to; on success rename it over ``path``.

    If the block raises (Ctrl-C included), the temp file is removed and ``path`` is untouched.
    ``companions`` are suffixes of files written beside the temp one under its stem, such as the
    ``.bin`` OpenVINO writes beside an ``.xml``: they are renamed (first) and cleaned up with it.

    ``replace=False``: a file that exists at ``path`` when the result is done (one that appeared
    while it was written, say) is never replaced. The result is kept under ``kept_path(path)``
    and ``OutputAppeared`` says where; companions are then left under their temp names and removed.

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
        if not replace:
            published = []
            try:
                for src, dst in [*extra, (tmp, path)]:
                    publish_new(src, dst)
                    published.append(dst)
            except FileExistsError:
                for dst in published:  # only ones this call made
                    dst.unlink()
                raise OutputAppeared(path, _keep(tmp, path)) from None
            return
        # The main file last: once it exists under its name, everything it needs does too.
        for src, dst in extra:
            _keep_mode(dst, src)
            os.replace(src, dst)
        _keep_mode(path, tmp)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, *(src for src, _ in extra)):
            leftover.unlink(missing_ok=True)
