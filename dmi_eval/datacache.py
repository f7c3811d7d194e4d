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

:func:`load_study_cached` does the same for the areas of sites drawn as market
polygons (:func:`dmi_eval.geo.resolve_sites` reads the polygons: about half a
second for the synthetic study, with the geometry libraries' imports), keyed
by the same code digest, the study's ``[data]`` / ``[geo]`` settings and
sites, and the bytes of every input file and market polygon.

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

from dmi_eval.config import DataSpec, GeoSpec, Site, Study, load_study
from dmi_eval.data import Ingest, load_study_data
from dmi_eval.study_spec import with_companions

CACHE_ENV = "DMI_EVAL_CACHE"
CACHE_DIR_ENV = "DMI_EVAL_CACHE_DIR"
MAX_ENTRIES = 8
"""Entries kept; the least recently used beyond this are removed when one is written (every
code or input change writes a new entry, and a city-wide panel can take tens of MB)."""
_PACKAGE = Path(__file__).resolve().parent
_SOURCE_SUFFIXES = frozenset({".py", ".csv", ".json", ".toml", ".txt"})
_CODE_DIGEST: list[str] = []
_FILE_DIGESTS: dict[tuple[str, int, int], bytes] = {}


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
    stat = path.stat()
    seen = (str(path), stat.st_size, stat.st_mtime_ns)
    if seen not in _FILE_DIGESTS:  # each file read once per process (two keys use the extract)
        content = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                content.update(block)
        _FILE_DIGESTS[seen] = content.digest()
    h.update(str(path).encode())
    h.update(_FILE_DIGESTS[seen])


def _key(settings: object, files: list[Path | str | None]) -> str:
    """SHA-256 of the package's code, ``repr(settings)`` and the bytes of ``files``
    (a missing or absent file counts as such)."""
    h = hashlib.sha256()
    h.update(_code_digest().encode())
    h.update(repr(settings).encode())
    for path in files:
        if path is not None and Path(path).is_file():
            for part in with_companions(Path(path)):  # a shapefile's .prj, .dbf, ...
                _file_digest(h, part)
        else:
            h.update(b"-")
    return h.hexdigest()


def study_data_key(study: Study) -> str:
    """SHA-256 of everything :func:`~dmi_eval.data.load_study_data` reads for ``study``."""
    files = [
        study.data.incidents,
        study.data.counts,
        study.data.areas,
        None if isinstance(study.data.offense_map, str) else study.data.offense_map,
    ]
    if study.geo is not None:
        files += [study.geo.areas, study.geo.boundary]
    return _key((study.data, study.geo, study.frequency, study.start, study.end), files)


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
    cached = _read_entry(path)
    if isinstance(cached, Ingest):
        return cached
    ingest = load_study_data(study)
    _write_entry(path, ingest, folder)
    return ingest


def load_study_cached(path: str | Path) -> Study:
    """:func:`~dmi_eval.config.load_study`, the areas of market polygons from the cache.

    The study file is always read and validated; only
    :func:`~dmi_eval.geo.resolve_sites` (which reads the polygon files) is
    skipped when nothing it reads changed. Errors are never cached.
    """
    return load_study(path, resolve_sites=_resolve_sites_cached)


def _resolve_sites_cached(
    study_file: Path, geo: GeoSpec, sites: tuple[Site, ...], data: DataSpec
) -> tuple[Site, ...]:
    def resolve() -> tuple[Site, ...]:
        from dmi_eval.geo import resolve_sites  # geopandas and shapely: only when read

        return resolve_sites(study_file, geo, sites, data)

    folder = cache_dir()
    if folder is None:
        return resolve()
    files = [data.incidents, data.counts, data.areas, geo.areas, geo.boundary]
    key = _key((geo, sites, data), files + [site.market for site in sites])
    path = folder / "sites" / f"{key}.pickle"
    cached = _read_entry(path)
    if isinstance(cached, tuple) and all(isinstance(site, Site) for site in cached):
        return cached
    resolved = resolve()
    _write_entry(path, resolved, folder)
    return resolved


def _read_entry(path: Path) -> Any:
    """The entry at ``path`` (marked as recently used), or ``None``."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            cached = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None  # unreadable or from an incompatible version: computed again
    os.utime(path)  # recently used: kept by _prune
    return cached


def _write_entry(path: Path, value: Any, folder: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as fh:
            MappingProxyPickler(fh, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        os.replace(fh.name, path)  # atomic: concurrent runs never see half an entry
        _prune(path.parent)
    except OSError as exc:  # a read-only or full disk only costs the next run the reading time
        warnings.warn(
            f"dmi_eval: could not write the data cache in {folder} ({exc}); the data will be "
            f"read again next time (set {CACHE_DIR_ENV} to a writable folder or {CACHE_ENV}=0)",
            stacklevel=3,
        )


def _prune(folder: Path) -> None:
    """Remove all but the :data:`MAX_ENTRIES` most recently used entries of ``folder``."""
    entries = sorted(folder.glob("*.pickle"), key=lambda e: e.stat().st_mtime, reverse=True)
    for entry in entries[MAX_ENTRIES:]:
        entry.unlink(missing_ok=True)  # a concurrent run may have removed it already
