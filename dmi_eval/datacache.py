"""A content-addressed cache of a study's data as read (:class:`~dmi_eval.data.Ingest`).

Reading and geocoding an incident extract is most of what a second
``dmi-eval check`` of the same study costs. :func:`load_study_data_cached`
keys the :class:`~dmi_eval.data.Ingest` by a SHA-256 hash of everything the
reading depends on — the bytes of every input file (incidents or counts, the
areas' covariates, the polygon and boundary files, a custom offense map), the
study's ``[data]`` / ``[geo]`` settings, frequency and date range, and the
bytes of the package's own source files — so any change to an input, a
setting or the code reads the data again. A hit returns what reading would
return; nothing about the cache reaches a report.

The cache lives in ``$DMI_EVAL_CACHE_DIR`` (default ``$XDG_CACHE_HOME/dmi_eval``
or ``~/.cache/dmi_eval``); ``DMI_EVAL_CACHE=0`` turns it off. It keeps the
:data:`MAX_ENTRIES` most recently used entries. Entries are
pickles written by this package (trusted input, like
:func:`dmi_eval.pipeline.load`); an entry that cannot be read is read again
from the data and rewritten.
"""

from __future__ import annotations

import copyreg
import hashlib
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dmi_eval.config import Study
from dmi_eval.data import Ingest, load_study_data

CACHE_ENV = "DMI_EVAL_CACHE"
CACHE_DIR_ENV = "DMI_EVAL_CACHE_DIR"
MAX_ENTRIES = 8
"""Entries kept; the least recently used beyond this are removed when one is written (every
code or input change writes a new entry, and a city-wide panel can take tens of MB)."""
_PACKAGE = Path(__file__).resolve().parent
_SOURCE_SUFFIXES = frozenset({".py", ".csv", ".json", ".toml", ".txt"})
_CODE_DIGEST: list[str] = []


def cache_dir() -> Path | None:
    """Where entries are kept, or ``None`` when ``DMI_EVAL_CACHE=0``."""
    if os.environ.get(CACHE_ENV, "1").strip().lower() in ("0", "off", "no", "false"):
        return None
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dmi_eval"


def _code_digest() -> str:
    """Hash of the package's source and data files (any code change misses the cache)."""
    if not _CODE_DIGEST:
        h = hashlib.sha256()
        for path in sorted(_PACKAGE.rglob("*")):
            if path.suffix in _SOURCE_SUFFIXES and path.is_file():
                h.update(path.relative_to(_PACKAGE).as_posix().encode())
                h.update(path.read_bytes())
        _CODE_DIGEST.append(h.hexdigest())
    return _CODE_DIGEST[0]


def _file_digest(h: Any, path: Path) -> None:
    h.update(str(path).encode())
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


def study_data_key(study: Study) -> str:
    """SHA-256 of everything :func:`~dmi_eval.data.load_study_data` reads for ``study``."""
    h = hashlib.sha256()
    h.update(_code_digest().encode())
    h.update(repr((study.data, study.geo, study.frequency, study.start, study.end)).encode())
    files = [
        study.data.incidents,
        study.data.counts,
        study.data.areas,
        None if isinstance(study.data.offense_map, str) else study.data.offense_map,
    ]
    if study.geo is not None:
        files += [study.geo.areas, study.geo.boundary]
    for path in files:
        if path is not None and Path(path).is_file():
            _file_digest(h, Path(path))
        else:
            h.update(b"-")
    return h.hexdigest()


def _mappingproxy(items: dict[Any, Any]) -> MappingProxyType:
    return MappingProxyType(items)


def _reduce_mappingproxy(proxy: MappingProxyType) -> tuple[Any, ...]:
    return _mappingproxy, (dict(proxy),)


class MappingProxyPickler(pickle.Pickler):
    """A pickler that also writes read-only mappings (``MappingProxyType``), which the
    results and panel objects hold and the standard pickler refuses."""

    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[MappingProxyType] = _reduce_mappingproxy


def load_study_data_cached(study: Study) -> Ingest:
    """:func:`~dmi_eval.data.load_study_data`, from the cache when nothing it reads changed.

    Errors are never cached: a study whose data cannot be read raises every time.
    """
    folder = cache_dir()
    if folder is None:
        return load_study_data(study)
    path = folder / "ingest" / f"{study_data_key(study)}.pickle"
    if path.is_file():
        try:
            with path.open("rb") as fh:
                cached = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            cached = None  # unreadable or from an incompatible version: read the data again
        if isinstance(cached, Ingest):
            os.utime(path)  # recently used: kept by _prune
            return cached
    ingest = load_study_data(study)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as fh:
            MappingProxyPickler(fh, protocol=pickle.HIGHEST_PROTOCOL).dump(ingest)
        os.replace(fh.name, path)  # atomic: concurrent runs never see half an entry
        _prune(path.parent)
    except OSError as exc:  # a read-only or full disk only costs the next run the reading time
        warnings.warn(
            f"dmi_eval: could not write the data cache in {folder} ({exc}); the data will be "
            f"read again next time (set {CACHE_DIR_ENV} to a writable folder or {CACHE_ENV}=0)",
            stacklevel=2,
        )
    return ingest


def _prune(folder: Path) -> None:
    """Remove all but the :data:`MAX_ENTRIES` most recently used entries of ``folder``."""
    entries = sorted(folder.glob("*.pickle"), key=lambda e: e.stat().st_mtime, reverse=True)
    for entry in entries[MAX_ENTRIES:]:
        entry.unlink(missing_ok=True)  # a concurrent run may have removed it already
