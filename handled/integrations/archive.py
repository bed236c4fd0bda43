"""The source archive: every imported file kept by its sha256.

With the run history (which names each file and its sha256), the archive is
enough to rebuild the DATA database's workspace tables from scratch.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def archived_path(archive_dir: str | os.PathLike, sha256: str) -> Path:
    return Path(archive_dir) / sha256[:2] / sha256


def archive_file(source: Path, sha256: str, archive_dir: str | os.PathLike) -> Path:
    """Copy ``source`` into the archive (once; same content, same place)."""
    target = archived_path(archive_dir, sha256)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{sha256}.{os.getpid()}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)  # atomic: a reader never sees half a file
    return target
