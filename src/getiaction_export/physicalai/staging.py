"""The package as it will be once a format is promoted, assembled in a hidden folder beside the artifacts.

The staged files are linked under their final names, beside the job's already promoted formats and the manifest
the package stage will write; so the runtime check and the rollout run the package before anything gets a final
name. The folder is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from getiaction_export.physicalai.manifest import package_files, package_manifest, write_manifest
from getiaction_export.physicalai.task import extra_files, package_extras
from getiaction_export.state import FormatOutcome, JobState


@contextmanager
def staged_package(state: JobState, outcome: FormatOutcome) -> Iterator[tuple[Path, str]]:
    """The package as it will be once ``outcome`` is promoted, in a hidden folder removed afterwards.

    Yields the folder and the package's default backend (the rollout stage drives the same package).
    """
    replica = state.out_dir / f".{outcome.final[0].stem}.package"
    shutil.rmtree(replica, ignore_errors=True)  # left by a killed run
    try:
        yield replica, _assemble(state, outcome, replica)
    finally:
        shutil.rmtree(replica, ignore_errors=True)


def _assemble(state: JobState, outcome: FormatOutcome, replica: Path) -> str:
    """Link the package's files into ``replica`` and write its manifest; returns the default backend."""
    replica.mkdir()
    files = package_files(state, staged=outcome)
    for name in files:
        other = state.formats[name]
        sources = outcome.staged if other is outcome else [Path(path) for path in other.files]
        for source, final in zip(sources, other.final, strict=True):
            _link(source, replica / final.name)
    package_extras(state)  # a task's tokenizer, made once per job
    for source, name in extra_files(state):
        _link(source, replica / name)
    write_manifest(replica, package_manifest(state, files, with_checks=False))
    return next(iter(files))


def _link(source: Path, target: Path) -> None:
    """``target`` showing ``source``'s bytes without copying them where possible (a hard link, else a symlink)."""
    try:
        os.link(source, target)
    except OSError:
        try:
            os.symlink(Path(source).resolve(), target)
        except OSError:
            shutil.copyfile(source, target)
