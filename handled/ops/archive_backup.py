"""Backups of the import archive (IMPORT_ARCHIVE_DIR), incremental by sha256.

The archive keeps every imported file under its sha256 (integrations/archive.py)
and never changes a file once written, so a backup only needs the files no earlier
backup holds. An archive backup is a gzip'd tar of those new files (members named as
in the archive, ``ab/ab12...``) and a manifest listing *every* file the archive held
then: its sha256, size and the backup file holding it. Restoring the newest backup
therefore gives back the whole archive, reading the backup files its manifest names
(it and earlier ones: retention keeps every backup a kept manifest names), and
checks each file's sha256 before putting it in place. With PRIMARY's run history
(which names each import's file by sha256) that is what `flask data rebuild` needs.

The tar goes through ``gpg --symmetric`` when BACKUP_ENCRYPTION_PASSPHRASE is set,
like the database dumps (ops/backup.py), and is written under a .partial name
first: a backup that did not finish is never in place.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import subprocess
import tarfile
import tempfile
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from handled import audit
from handled.context import Context
from handled.errors import first_line
from handled.integrations.archive import archived_path
from handled.ops import OpsError
from handled.ops.backup import (STAMP_FORMAT, apply_retention, gpg_command, is_encrypted, list_backups,
                                manifest_path, private_file, private_folder, read_manifest, save_manifest)

SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20
GZIP_LEVEL = 6   # zlib's default: most of level 9's gain on CSV at a fraction of its time


@dataclass
class ArchiveBackupResult:
    path: Path
    manifest: Path
    files: int            # every file the manifest lists
    stored: int           # of which this backup holds
    stored_bytes: int
    deleted: list[Path] = field(default_factory=list)
    lacking: list[str] = field(default_factory=list)   # files the run history needs that the archive lacks


@dataclass
class ArchiveRestoreResult:
    target: Path
    restored: int         # written from the backups
    present: int          # already there with the right sha256
    backups_read: list[str] = field(default_factory=list)


def archive_files(archive_dir: str | os.PathLike) -> dict[str, Path]:
    """Every file of the archive by sha256 (``ab/ab12...``); a copy still being written (its
    dot-named .partial) is not one yet."""
    found = {}
    root = Path(archive_dir)
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or len(folder.name) != 2:
            continue
        for path in sorted(folder.iterdir()):
            if SHA256.match(path.name) and path.name[:2] == folder.name and path.is_file():
                found[path.name] = path
    return found


def holders(folder: Path) -> dict[str, str]:
    """sha256 -> the name of a backup file in ``folder`` that holds it, per the archive manifests
    there (oldest first, so a file stays with the backup that first stored it); backups whose file
    is gone are not counted."""
    held = {}
    for path, _, _ in reversed(list_backups(folder, "archive")):
        manifest = read_manifest(path)
        for sha, entry in (manifest or {}).get("files", {}).items():
            if sha not in held and (folder / entry["backup"]).is_file():
                held[sha] = entry["backup"]
    return held


def needed_backups(kept: list[Path]) -> set[Path]:
    """The backup files the manifests of ``kept`` name: retention must keep them too."""
    needed = set()
    for path in kept:
        for entry in (read_manifest(path) or {}).get("files", {}).values():
            needed.add(path.parent / entry["backup"])
    return needed


def create_archive_backup(ctx: Context, now: datetime | None = None) -> ArchiveBackupResult:
    """Store the archive's files no earlier backup holds; list every file in the manifest."""
    settings = ctx.settings
    folder = private_folder(Path(settings.backup_dir))
    now = now or datetime.now(timezone.utc)
    path = folder / f"handled-archive-{now.strftime(STAMP_FORMAT)}.tgz"
    partial = path.with_suffix(".tgz.partial")
    current = archive_files(settings.import_archive_dir)
    held = holders(folder)
    new = [sha for sha in current if sha not in held]
    passphrase = settings.backup_encryption_passphrase
    sizes = {}
    try:
        with _tar_writer(partial, passphrase) as tar:
            for done, sha in enumerate(new, 1):
                ctx.progress("archive", done, len(new), f"storing {sha[:12]}")
                sizes[sha] = _add_checked(tar, current[sha], sha)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(path)
    files = {sha: {"size": sizes.get(sha) or current[sha].stat().st_size, "backup": held.get(sha, path.name)}
             for sha in current}
    manifest = save_manifest(path, {
        "side": "archive", "archive": str(settings.import_archive_dir), "created_at": now.isoformat(),
        "file": path.name, "bytes": path.stat().st_size, "encrypted": bool(passphrase),
        "stored": len(new), "files": files})
    deleted = apply_retention(folder, "archive", settings.backup_keep, settings.backup_max_age_days, keep=path,
                              needed_by=needed_backups)
    audit.record(ctx, "backup.create", "archive", "archive", str(settings.import_archive_dir), {
        "file": path.name, "bytes": path.stat().st_size, "files": len(files), "stored": len(new),
        "retention_deleted": [p.name for p in deleted]})
    return ArchiveBackupResult(path, manifest, len(files), len(new), sum(sizes.values()), deleted,
                               lacking_from_archive(settings, current))


def lacking_from_archive(settings, current: dict[str, Path]) -> list[str]:
    """The files `flask data rebuild` would re-import (PRIMARY's history) that the archive lacks:
    a backup of the archive without them cannot rebuild DATA."""
    from handled.ops.rebuild import plan_rebuild

    return [f"{integration}: {planned.file_name} (run {planned.run_id}, sha256 {planned.sha256[:12]}…)"
            for integration, files in plan_rebuild(settings).items() for planned in files
            if planned.sha256 not in current]


class _Hashing:
    """A file read through sha256 (tarfile reads a member's bytes through ``read``)."""

    def __init__(self, raw):
        self.raw, self.hash, self.size = raw, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hash.update(data)
        self.size += len(data)
        return data


def _add_checked(tar: tarfile.TarFile, source: Path, sha: str) -> int:
    """Add one archive file, refusing one whose content no longer matches its name."""
    with open(source, "rb") as raw:
        info = tar.gettarinfo(fileobj=raw, arcname=f"{sha[:2]}/{sha}")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        reader = _Hashing(raw)
        tar.addfile(info, reader)
    if reader.hash.hexdigest() != sha:
        raise OpsError(f"The archive file {source} is damaged: its content's sha256 is "
                       f"{reader.hash.hexdigest()[:12]}…, not its name; re-import that file (the run history "
                       "names it) or restore it from an earlier archive backup, then back up again.")
    return reader.size


@contextmanager
def _tar_writer(partial: Path, passphrase: str | None):
    """A streaming tar writer into ``partial`` (0600): gzip, then gpg when a passphrase is set."""
    with ExitStack() as stack:
        out = os.fdopen(private_file(partial), "wb")
        stack.callback(out.close)
        gpg = None
        if passphrase:
            command, fd = stack.enter_context(gpg_command(passphrase, "--symmetric", "--cipher-algo", "AES256"))
            errors = stack.enter_context(tempfile.TemporaryFile())
            gpg = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=errors, pass_fds=(fd,))
            sink = gpg.stdin
        else:
            sink = out
        try:
            with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as zipped, \
                    tarfile.open(fileobj=zipped, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                yield tar
        finally:
            if gpg is not None:
                gpg.stdin.close()
                if gpg.wait() != 0:
                    errors.seek(0)
                    raise OpsError(f"gpg encryption of {partial.name} failed: "
                                   f"{errors.read().decode(errors='replace').strip() or gpg.returncode}")


READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


@contextmanager
def backup_members(path: Path, passphrase: str | None):
    """The archive files in a backup, streamed as (sha256 its name gives, a readable file), decrypted on
    the way when it is encrypted. A damaged or undecryptable backup becomes one sentence naming it;
    errors of the caller's own (writing a restored file) pass through unchanged."""
    encrypted = is_encrypted(path)
    if encrypted and not passphrase:
        raise OpsError(f"{path.name} is encrypted (it is not a gzip'd tar); set BACKUP_ENCRYPTION_PASSPHRASE "
                       "to the passphrase it was made with.")
    with ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb"))
        gpg = errors = None
        if encrypted:
            command, fd = stack.enter_context(gpg_command(passphrase, "--decrypt"))
            errors = stack.enter_context(tempfile.TemporaryFile())
            gpg = subprocess.Popen(command, stdin=raw, stdout=subprocess.PIPE, stderr=errors, pass_fds=(fd,))
            stack.callback(gpg.wait)
            stack.callback(gpg.stdout.close)
            raw = gpg.stdout

        def unreadable(exc: BaseException) -> OpsError:
            if gpg is not None:
                gpg.stdout.close()
                if gpg.wait() != 0:
                    errors.seek(0)
                    said = errors.read().decode(errors="replace").strip().splitlines()
                    return OpsError(f"{path.name} could not be decrypted with BACKUP_ENCRYPTION_PASSPHRASE "
                                    f"({said[-1] if said else gpg.returncode}).")
            return OpsError(f"{path.name} is damaged: {first_line(exc)} (reading it as a gzip'd tar).")

        def members():
            try:
                tar = tarfile.open(fileobj=gzip.GzipFile(fileobj=raw, mode="rb"), mode="r|")
                for member in tar:
                    sha = member_sha(member)
                    if sha:
                        yield sha, _Guarded(tar.extractfile(member), unreadable)
            except READ_ERRORS as exc:
                raise unreadable(exc) from None

        yield members()


class _Guarded:
    """A member's file whose read errors (a damaged backup) become the backup's sentence."""

    def __init__(self, raw, unreadable):
        self.raw, self.unreadable = raw, unreadable

    def chunks(self):
        while True:
            try:
                block = self.raw.read(CHUNK)
            except READ_ERRORS as exc:
                raise self.unreadable(exc) from None
            if not block:
                return
            yield block


def member_sha(member: tarfile.TarInfo) -> str | None:
    """The sha256 a member's name gives (``ab/ab12...``), or None for anything else."""
    folder, _, name = member.name.partition("/")
    return name if member.isfile() and SHA256.match(name) and name[:2] == folder else None


def _plan(path: Path) -> tuple[dict, dict[str, list[str]]]:
    """The manifest of an archive backup and, per backup file it names, the sha256s held there;
    refuses a manifest that is missing or names a backup file that is not beside it."""
    manifest = read_manifest(path)
    if manifest is None or manifest.get("side") != "archive":
        raise OpsError(f"{manifest_path(path).name} (the manifest written with {path.name}) is missing or is not "
                       "an archive backup's; it lists the files to restore, so copy it back beside the backup.")
    by_backup: dict[str, list[str]] = {}
    for sha, entry in manifest["files"].items():
        by_backup.setdefault(entry["backup"], []).append(sha)
    missing = sorted(name for name in by_backup if not (path.parent / name).is_file())
    if missing:
        counts = ", ".join(f"{name} ({len(by_backup[name])} file(s))" for name in missing)
        raise OpsError(f"{path.name} needs earlier archive backups that are not in {path.parent}: {counts}; copy "
                       "them back beside it (from where BACKUP_COPY_COMMAND put them) first.")
    return manifest, by_backup


def restore_archive(ctx: Context, path: Path, target: Path | None = None) -> ArchiveRestoreResult:
    """Put every file the backup's manifest lists into ``target`` (IMPORT_ARCHIVE_DIR by default),
    each checked against its sha256 before it is renamed into place; files already there with the
    right content are kept."""
    path = Path(path)
    if not path.is_file():
        raise OpsError(f"There is no backup file {path}.")
    target = Path(target or ctx.settings.import_archive_dir)
    manifest, by_backup = _plan(path)
    result = ArchiveRestoreResult(target, 0, 0)
    wanted: dict[str, set[str]] = {}
    for backup, shas in by_backup.items():
        for sha in shas:
            if _holds(target, sha):
                result.present += 1
            else:
                wanted.setdefault(backup, set()).add(sha)
    for number, (backup, shas) in enumerate(sorted(wanted.items()), 1):
        ctx.progress("restore", number, len(wanted), f"reading {backup} ({len(shas)} file(s))")
        _extract(path.parent / backup, shas, target, ctx.settings.backup_encryption_passphrase)
        result.restored += len(shas)
        result.backups_read.append(backup)
    audit.record_in(ctx.settings.direct_database("primary"), ctx, "backup.restore", "archive", "archive",
                    str(target), {"file": path.name, "restored": result.restored, "present": result.present})
    return result


def _holds(target: Path, sha: str) -> bool:
    """The archive folder already holds this file with the right content."""
    existing = archived_path(target, sha)
    return existing.is_file() and file_sha256(existing) == sha


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(backup: Path, shas: set[str], target: Path, passphrase: str | None) -> None:
    """Write the members ``shas`` of one backup into the archive folder, each checked first."""
    left = set(shas)
    with backup_members(backup, passphrase) as members:
        for sha, source in members:
            if sha not in left:
                continue
            final = archived_path(target, sha)
            final.parent.mkdir(parents=True, exist_ok=True)
            partial = final.with_name(f".{sha}.restore.partial")
            digest = hashlib.sha256()
            try:
                with open(partial, "wb") as out:
                    for block in source.chunks():
                        digest.update(block)
                        out.write(block)
                if digest.hexdigest() != sha:
                    raise OpsError(_damaged(backup, sha, digest.hexdigest()))
                os.replace(partial, final)
            finally:
                partial.unlink(missing_ok=True)
            left.discard(sha)
    if left:
        raise OpsError(_lacking(backup, left))


def _damaged(backup: Path, sha: str, actual: str) -> str:
    return (f"{backup.name} is damaged: its file {sha[:12]}… hashes to {actual[:12]}…, not the sha256 its name and "
            "the manifest give; restore that file from another copy of this backup.")


def _lacking(backup: Path, shas: set[str]) -> str:
    first = sorted(shas)[0]
    return (f"{backup.name} lacks {len(shas)} file(s) its manifest says it holds (first: {first[:12]}…); "
            "restore those from another copy of this backup.")


def verify_archive(ctx: Context, path: Path) -> int:
    """Read every file the backup's manifest lists from the backup holding it and check its sha256
    and size; return how many were checked, or raise OpsError naming the first bad one."""
    path = Path(path)
    if not path.is_file():
        raise OpsError(f"There is no backup file {path}.")
    manifest, by_backup = _plan(path)
    checked = 0
    for number, (backup, shas) in enumerate(sorted(by_backup.items()), 1):
        ctx.progress("verify", number, len(by_backup), f"reading {backup} ({len(shas)} file(s))")
        left = set(shas)
        with backup_members(path.parent / backup, ctx.settings.backup_encryption_passphrase) as members:
            for sha, source in members:
                if sha not in left:
                    continue
                digest = hashlib.sha256()
                for block in source.chunks():
                    digest.update(block)
                if digest.hexdigest() != sha:
                    raise OpsError(_damaged(path.parent / backup, sha, digest.hexdigest()))
                left.discard(sha)
                checked += 1
        if left:
            raise OpsError(_lacking(path.parent / backup, left))
    return checked
