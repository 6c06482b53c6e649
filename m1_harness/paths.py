"""Where the shipped data folders live: inside the wheel, or at the repo root in a dev checkout."""

from __future__ import annotations

import os
from pathlib import Path

from m1_harness.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_ENV = "M1_HARNESS_DATA"
CACHE_ENV = "M1_HARNESS_CACHE"


def shipped_dir(name: str) -> Path:
    """``tasks``, ``train`` or ``plugins``: ``m1_harness/_data/<name>`` in a wheel, else the repo's."""
    packaged = PACKAGE_DIR / "_data" / name
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parent / name


def cache_root() -> Path:
    """``$M1_HARNESS_CACHE``, else ``~/.cache/m1_harness``: shared by every run of the user."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "m1_harness").expanduser()


def cache_dir(*parts: str) -> Path:
    """A writable cache folder under ``cache_root()`` (created); a root that cannot hold one (a file, a
    folder of another user) is one sentence naming ``M1_HARNESS_CACHE``, not a NotADirectoryError."""
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{CACHE_ENV}={os.environ.get(CACHE_ENV) or ''!r}: the cache folder {str(path)!r} cannot be created "
            f"({exc.strerror or type(exc).__name__}): set {CACHE_ENV} to a folder you can write to "
            "(default ~/.cache/m1_harness)"
        ) from None
    return path


class OutputError(UserError, ValueError):
    """An output location that cannot be written; found before any expensive work starts."""


def ensure_writable_dir(path: str | os.PathLike, setting: str) -> Path:
    """Create ``path`` if needed and prove a file can be written there, or raise OutputError naming
    ``setting`` (the argument the user gave), so a bad location fails in a second, not after a run."""
    import tempfile

    path = Path(path)
    existing = next((q for q in (path, *path.parents) if q.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(
            f"{setting}={str(path)!r} cannot be written ({str(existing)!r} is a file, not a folder): "
            "choose a folder you can write to"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".m1_write_check_"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(
            f"{setting}={str(path)!r} cannot be written ({reason}): choose a folder you can write to"
        ) from None
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole file or nothing: a crash or a full disk never leaves half a file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_utf8(path: str | os.PathLike, error: type[Exception] = OutputError) -> str:
    """A data file's text, or ``error`` naming the file when it is not UTF-8 (a binary or Latin-1 file).
    A leading byte-order mark (Windows editors write one) is dropped: it is not part of the first line."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded): save it as UTF-8 JSON") from None
