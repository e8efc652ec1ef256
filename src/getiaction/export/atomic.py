"""Atomic file writes: a temporary name in the same folder, then one rename.

A reader (a deploy script, a robot) never sees a half-written file under a final name, and a
failed write leaves whatever was there before untouched.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_bytes(folder / "a.bin", b"hello")
    >>> (folder / "a.bin").read_bytes()
    b'hello'
    >>> sorted(p.name for p in folder.iterdir())
    ['a.bin']
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def artifact_path(path: str | os.PathLike[str], suffix: str) -> Path:
    """``path`` as a ``Path`` that must end in ``suffix`` (a one-line ConfigError otherwise), its folder made."""
    from getiaction.errors import ConfigError

    path = Path(path)
    if path.suffix != suffix:
        raise ConfigError(f"path: {str(path)!r} must end in {suffix}")
    prepare_parent(path)
    return path


def prepare_parent(path: Path) -> None:
    """Create ``path``'s folder, with an error that names the path when that is impossible."""
    from getiaction.errors import ExportError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise ExportError(f"cannot write {path}: a parent of it is a file, not a folder") from error
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error.strerror or error}") from error
    if not os.access(path.parent, os.W_OK):
        raise ExportError(f"cannot write {path}: folder {path.parent} is not writable")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps ``path``'s suffix (tools such as OpenVINO pick formats by suffix)
    and starts with a dot so globbing ``*.onnx`` never sees it.
    """
    final = Path(path)
    prepare_parent(final)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=final.suffix if suffix is None else suffix, dir=final.parent
    )
    os.close(handle)
    temp = Path(temp_name)
    # mkstemp makes the file private (0600); give it the mode open() would (an existing file's
    # mode, else 0666 minus the umask) so other users and deploy tools can still read it.
    os.chmod(temp, mode_for(final))
    try:
        yield temp
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def mode_for(final: Path) -> int:
    """The permission bits ``open(final, "w")`` would leave: kept if it exists, else by umask."""
    try:
        return stat.S_IMODE(final.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsync'd before the rename)."""
    with atomic_path(path) as temp, open(temp, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
