"""The record of a folder scan, so that a later start decodes only what changed.

Every image of a folder is decoded once to find the files that would fail (skipped for good:
a corrupt file must not end an epoch). The manifest keeps what that check found, per file: its
path relative to the folder, size, modification time (ns), label and whether it decoded. A
later start lists the folder and stats every file (no file is opened), reuses the entries whose
size and modification time are unchanged, decodes the new or changed files and drops the
removed ones: a start costs time in proportion to what changed.

Where: `<store_dir>/<folder name>-<hash of its absolute path>.npz` (`store_dir` is
`<data_dir>/folder_manifests` for run.py), so that a read-only image folder works and two
folders of the same name do not share one. Written atomically (a temporary file renamed over
the old one): two processes writing at once both succeed, and a reader sees one whole
manifest. A missing, unreadable or foreign manifest (other folder, other format) is ignored and
every file checked again; so is any manifest when `rescan` is set (--rescan_folder). The files
that failed are listed, one absolute path a line, in `<same name>-unreadable.txt` beside it.

The processes of a multi-worker run share a scan (`Share`): process k checks only the files
i with i % count == k, and the results are summed across the processes, so that every process
knows every result and writes the same manifest.

No TensorFlow here: the decoder is passed in (data.folders gives TensorFlow's).
"""
import dataclasses
import hashlib
import logging
import os
import tempfile
import zipfile
import zlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

FORMAT_VERSION = 1
UNREADABLE_SUFFIX = '-unreadable.txt'
_SEPARATOR = '\0'  # cannot occur in a file name
_log = logging.getLogger(__name__)


def _sum_in_this_process(values: np.ndarray) -> np.ndarray:
    return values


@dataclasses.dataclass(frozen=True)
class Share:
    """This process's part of a scan shared by `count` processes.

    Attributes:
      index: this process's number in [0, count); process 0 reports the unreadable files.
      count: processes sharing the scan (the workers of a multi-worker run).
      all_sum: (n,) int64 -> (n,) int64, the element-wise sum over the processes; every
        process must call it in the same order (it is a collective). For `count` processes
        with several replicas each, a sum over replicas serves as well: its entries are only
        compared with 0 and with each other.
    """
    index: int = 0
    count: int = 1
    all_sum: Callable[[np.ndarray], np.ndarray] = _sum_in_this_process


def location(store_dir: str, root: str) -> str:
    """The manifest file of image folder `root` in `store_dir`."""
    absolute = os.path.realpath(root)
    digest = hashlib.sha256(absolute.encode('utf-8', 'surrogateescape')).hexdigest()[:16]
    return os.path.join(store_dir, f'{os.path.basename(absolute) or "root"}-{digest}.npz')


def unreadable_list(manifest_path: str) -> str:
    """The text file beside a manifest that lists its unreadable files."""
    return manifest_path[:-len('.npz')] + UNREADABLE_SUFFIX


def _join(strings: Sequence[str]) -> np.ndarray:
    return np.frombuffer(_SEPARATOR.join(strings).encode('utf-8', 'surrogateescape'), np.uint8)


def _split(blob: np.ndarray) -> List[str]:
    text = blob.tobytes().decode('utf-8', 'surrogateescape')
    return text.split(_SEPARATOR) if text else []


def _stats(paths: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(sizes, mtimes in ns) int64; -1 for a file gone since it was listed."""
    sizes, mtimes = np.full([len(paths)], -1, np.int64), np.full([len(paths)], -1, np.int64)
    for i, path in enumerate(paths):
        try:
            stat = os.stat(path)
        except OSError:
            continue
        sizes[i], mtimes[i] = stat.st_size, stat.st_mtime_ns
    return sizes, mtimes


def load(path: str, root: str) -> Optional[Dict[str, object]]:
    """{'paths', 'sizes', 'mtimes', 'ok'} of the manifest at `path`, or None when there is
    none, it does not read, or it is of another format version or folder."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            if (int(saved['version']) != FORMAT_VERSION
                    or str(saved['root']) != os.path.realpath(root)):
                return None
            record = {'paths': _split(saved['paths']), 'sizes': saved['sizes'],
                      'mtimes': saved['mtimes'], 'ok': saved['ok']}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        _log.warning('Ignoring the unreadable folder manifest %s (%s); checking every image.',
                     path, e)
        return None
    if not len(record['paths']) == len(record['sizes']) == len(record['ok']):
        return None
    return record


def _write_atomically(path: str, write: Callable) -> None:
    """write(file object) into a temporary file beside `path`, then renamed over it."""
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path),
                                     prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def save(path: str, root: str, relative: Sequence[str], sizes: np.ndarray,
         mtimes: np.ndarray, labels: np.ndarray, ok: np.ndarray,
         class_names: Sequence[str] = ()) -> None:
    """Writes the manifest and its list of unreadable files (removed when there is none).

    Raises:
      OSError: the directory of `path` cannot be created or written.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = dict(version=np.int64(FORMAT_VERSION), root=np.str_(os.path.realpath(root)),
                  paths=_join(relative), sizes=sizes, mtimes=mtimes,
                  labels=np.asarray(labels, np.int64), ok=np.asarray(ok, bool),
                  class_names=_join(class_names))
    _write_atomically(path, lambda f: np.savez(f, **arrays))
    failed = [os.path.join(root, p) for p, good in zip(relative, ok) if not good]
    listing = unreadable_list(path)
    if failed:
        text = ''.join(f'{p}\n' for p in failed).encode('utf-8', 'surrogateescape')
        _write_atomically(listing, lambda f: f.write(text))
    elif os.path.exists(listing):
        os.remove(listing)


def _reuse(previous, relative: Sequence[str], sizes: np.ndarray,
           mtimes: np.ndarray) -> Tuple[np.ndarray, np.ndarray, int]:
    """(known, known_ok, removed): which files the manifest has with the same size and
    modification time, which of those decoded, and how many of its files are gone."""
    count = len(relative)
    known, known_ok = np.zeros([count], bool), np.zeros([count], bool)
    if previous is None:
        return known, known_ok, 0
    if previous['paths'] == relative:  # the usual case: nothing added or removed
        where = np.arange(count)
    else:
        position = {p: i for i, p in enumerate(previous['paths'])}
        where = np.array([position.get(p, -1) for p in relative], np.int64)
    found = where >= 0
    at = where[found]
    known[found] = (previous['sizes'][at] == sizes[found]) & (
        previous['mtimes'][at] == mtimes[found])
    known_ok[found] = previous['ok'][at]
    return known, known_ok & known, len(previous['paths']) - int(found.sum())


def _check_same_listing(share: Share, root: str, relative: Sequence[str]) -> None:
    """ValueError on every process when the processes listed different files."""
    digest = zlib.crc32(_join(relative).tobytes()) + len(relative) * 7919
    total = share.all_sum(np.array([1, digest], np.int64))
    if total[1] != total[0] * digest:
        raise ValueError(f'The workers list different image files in {root}: every worker '
                         'must see the same folder (same files, same names).')


def check(root: str, paths: Sequence[str], labels: Sequence[int], *,
          decodes: Callable[[Sequence[str]], np.ndarray], store_dir: Optional[str],
          rescan: bool = False, share: Share = Share(),
          class_names: Sequence[str] = ()) -> np.ndarray:
    """Which of `paths` decode: from the manifest where a file is unchanged, else decoded.

    Args:
      root: the image folder; every path starts with it.
      paths: the image files found under `root`, in the folder's order.
      labels: their labels (-1 unlabelled), recorded in the manifest.
      decodes: paths -> (len(paths),) bool, whether each file reads and decodes.
      store_dir: directory of the manifests; None: no manifest (every file is decoded).
      rescan: ignore the manifest and decode every file (this process's share of them).
      share: this process's part of a scan shared by several processes.
      class_names: recorded in the manifest (label k is class_names[k]).

    Returns:
      (len(paths),) bool, the same in every process of `share`.
    """
    prefix = os.path.join(root, '')
    relative = [p[len(prefix):] for p in paths]
    if share.count > 1:
        _check_same_listing(share, root, relative)
    sizes, mtimes = _stats(paths)
    path = location(store_dir, root) if store_dir else None
    previous = None if rescan or path is None else load(path, root)
    known, known_ok, removed = _reuse(previous, relative, sizes, mtimes)
    mine = np.arange(len(paths)) % share.count == share.index
    todo = np.flatnonzero(mine & ~known)
    ok_here = known_ok & mine
    ok_here[todo] = decodes([paths[i] for i in todo])
    ok = share.all_sum(ok_here.astype(np.int64)) > 0
    if share.index == 0:
        _report(root, paths, ok, known & ~known_ok, path)
    if path is not None and (previous is None or not known.all() or removed):
        try:
            save(path, root, relative, sizes, mtimes, labels, ok, class_names)
        except OSError as e:
            _log.warning('Cannot write the folder manifest %s (%s): the next start will decode '
                         'every image of %s again. Give a writable --data_dir.', path, e, root)
    return ok


def _report(root: str, paths: Sequence[str], ok: np.ndarray, known_bad: np.ndarray,
            path: Optional[str]) -> None:
    """Names the unreadable files found now; counts those an earlier scan found."""
    listed = f'; listed in {unreadable_list(path)}' if path else ''
    new_bad = np.flatnonzero(~ok & ~known_bad)
    for i in new_bad:
        _log.warning('Skipping unreadable image %s', paths[i])
    if len(new_bad):
        _log.warning('Skipped %d unreadable image(s) of %d%s.', len(new_bad), len(paths), listed)
    if known_bad.any():
        _log.warning('Skipping %d unreadable image(s) of %s found by an earlier scan%s '
                     '(--rescan_folder checks every image again).', int(known_bad.sum()), root,
                     listed)
