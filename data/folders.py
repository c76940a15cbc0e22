"""The user's own images: a folder of JPEG and PNG files.

Layouts (sub-folders and files starting with '.' are ignored):
  root/<class>/**/*.jpg|png           labelled; label k is the k-th class name in sorted order.
  root/*.jpg|png                      unlabelled (label -1): pretraining only.
  root/{train,test,validation}/...    one split per sub-folder, each in one of the layouts
                                      above; classes are the sorted union over the splits.
Any other folder is the single split 'train'. Splits take TFDS slicing ('train[:50]',
'train[10%:]', 'train[:10]+train[20:30]'); examples are in class order (then file name), so
a slice of the first examples holds the first classes only. Class folders may be symbolic
links, but not to the root, a split folder or another class folder (every image would be read
twice): refused.

A list of image files (`FileListSource`): a text file naming one image a line (relative paths
start at the list's folder; blank lines and lines starting with '#' are skipped); unlabelled,
the single split 'train', in the order listed.

Every file is decoded once (in parallel, through tf.data) to find those that fail: they are
skipped, named in a warning when first found, so that no epoch can stop on a corrupt image.
For a folder, the manifest of data.manifest keeps what was found, so that a later start
decodes only the files added or changed since; the processes of a multi-worker run each
decode their share. Decoded images are RGB uint8 (grayscale is repeated, alpha is dropped).
"""
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data import augment
from data import manifest
from data import source as source_lib

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
SPLIT_FOLDERS = ('train', 'test', 'validation')
_log = logging.getLogger(__name__)


def _visible_entries(path: str) -> List[str]:
    return sorted(e for e in os.listdir(path) if not e.startswith('.'))


def _image_files(path: str, recursive: bool) -> List[str]:
    """Sorted paths of the JPEG/PNG files in `path` (and below it when recursive)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.')) if recursive else []
        found += [os.path.join(dirpath, f) for f in sorted(filenames)
                  if not f.startswith('.') and f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def _class_folders(path: str) -> List[str]:
    return [e for e in _visible_entries(path) if os.path.isdir(os.path.join(path, e))]


def _split_roots(root: str) -> Dict[str, str]:
    """{split: folder}: the split sub-folders when every sub-folder is a split name."""
    subfolders = _class_folders(root)
    if subfolders and set(subfolders) <= set(SPLIT_FOLDERS):
        return {s: os.path.join(root, s) for s in subfolders}
    return {'train': root}


def _contains(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _check_links(root: str, roots: Dict[str, str]) -> None:
    """Refuses class folders that reach the same images twice through symbolic links.

    A class folder linked to the root (or to a split folder, or to a folder above) would read
    every image again under its own class name, and two class folders of the same images
    (one a link to the other, also across splits) label each image twice or put training
    images into the test split. A link to a folder elsewhere is a class like any other.

    Raises:
      ValueError: naming the folder, where it leads and what to do.
    """
    containers = {os.path.realpath(p) for p in (root, *roots.values())}
    seen = {}  # real path -> the class folder that reaches it
    for path in roots.values():
        for name in _class_folders(path):
            shown = os.path.join(path, name)
            real = os.path.realpath(shown)
            if any(_contains(real, c) for c in containers):
                raise ValueError(
                    f'the class folder {shown} leads to {real}, which holds the class folders '
                    f'themselves (a link to the root or a folder above it): every image would '
                    f'be read again as class {name!r}; remove the link.')
            for other_real, other in seen.items():
                if _contains(real, other_real) or _contains(other_real, real):
                    where = (f'both lead to {real}' if real == other_real else
                             f'{other} leads to {other_real}, {shown} to {real}')
                    raise ValueError(
                        f'the class folders {other} and {shown} reach the same images '
                        f'({where}): each image would count twice; remove one of them.')
            seen[real] = shown


def _scan_split(path: str, class_names: Sequence[str]) -> Tuple[List[str], List[int]]:
    """(paths, labels) of one split folder; labels index class_names, -1 for a flat folder."""
    classes = _class_folders(path)
    if not classes:
        paths = _image_files(path, recursive=False)
        return paths, [-1] * len(paths)
    loose = _image_files(path, recursive=False)
    if loose:
        _log.warning('Ignoring %d image(s) directly in %s, outside the class folders.',
                     len(loose), path)
    paths, labels = [], []
    for name in classes:
        files = _image_files(os.path.join(path, name), recursive=True)
        paths += files
        labels += [class_names.index(name)] * len(files)
    return paths, labels


def _decodes(paths: Sequence[str]) -> np.ndarray:
    """(len(paths),) bool: which files read and decode without error (one parallel pass)."""
    if not paths:
        return np.zeros([0], bool)
    ds = tf.data.Dataset.from_tensor_slices(list(paths)).enumerate()
    # Returning a value computed from the pixels keeps the decode from being pruned.
    ds = ds.map(lambda i, p: (i, tf.shape(augment.decode_rgb(tf.io.read_file(p)))[0]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors()
    ok = np.zeros([len(paths)], bool)
    for i, _ in ds.as_numpy_iterator():
        ok[i] = True
    return ok


def scan_share(strategy: Optional[tf.distribute.Strategy]) -> manifest.Share:
    """This process's part of the check of files loaded under `strategy`.

    Under MultiWorkerMirroredStrategy: worker k of n (numbered as the input pipelines are,
    the chief first), the results summed with an all-reduce over the replicas; every worker
    must then load the files, in the same order relative to its other collectives.
    Elsewhere (None included): this process checks every file.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return manifest.Share()
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    chiefs = len(cluster.get('chief', []))
    index = 0 if resolver.task_type == 'chief' else chiefs + resolver.task_id

    def all_sum(values: np.ndarray) -> np.ndarray:
        values = tf.constant(values, tf.int64)
        summed = strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, values))
        return strategy.experimental_local_results(summed)[0].numpy()
    return manifest.Share(index=index, count=chiefs + len(cluster.get('worker', [])),
                          all_sum=all_sum)


def _split_readable(files: Dict[str, Tuple[List[str], List[int]]], ok: np.ndarray,
                    where: Dict[str, str]):
    """({split: (paths, labels) that decode}, {split: the unreadable paths}) from `ok`, the
    result of every split's files in order.

    Raises:
      ValueError: a split keeps no image.
    """
    readable, unreadable, start = {}, {}, 0
    for split, (paths, labels) in files.items():
        keep = ok[start:start + len(paths)]
        start += len(paths)
        bad = [p for p, good in zip(paths, keep) if not good]
        if not keep.any():
            raise ValueError(f'No readable JPEG or PNG image in {where[split]}'
                             + (f'; {len(bad)} unreadable, e.g. {bad[0]}' if bad else '')
                             + '.')
        readable[split] = np.asarray(paths, object)[keep], np.asarray(labels, np.int64)[keep]
        unreadable[split] = bad
    return readable, unreadable


class FilesSource(source_lib.Source):
    """Image files by split, each with a label (-1: none); unreadable ones are left out.

    Args:
      name: the data set's name, for messages.
      files: {split: (paths, labels)}, labels indexing class_names.
      class_names: the class names (empty: unlabelled).
      where: {split: what to name in the message when the split has no readable image}.
      root: the folder every path starts with, for the manifest ('' when they need not).
      manifest_dir: where the manifest of `root` is kept (data.manifest); None: no
        manifest, every file is decoded.
      rescan: decode every file even when the manifest knows it.
      share: this process's part of the check, when several processes share it.
    """

    reads_encoded = True

    def __init__(self, name: str, files: Dict[str, Tuple[List[str], List[int]]],
                 class_names: Sequence[str], where: Dict[str, str], root: str = '',
                 manifest_dir: Optional[str] = None, rescan: bool = False,
                 share: manifest.Share = manifest.Share()):
        self.name = name
        self.splits = tuple(files)
        self.class_names = tuple(class_names)
        paths = [p for split_paths, _ in files.values() for p in split_paths]
        labels = [label for _, split_labels in files.values() for label in split_labels]
        ok = manifest.check(root, paths, labels, decodes=_decodes, store_dir=manifest_dir,
                            rescan=rescan, share=share, class_names=self.class_names)
        self._files, self._unreadable = _split_readable(files, ok, where)

    def unreadable(self, split: str) -> List[str]:
        """The files of `split` (its base split) that did not decode, in scan order."""
        self.check_split(split)
        return list(self._unreadable[source_lib.base_split(split)])

    def indices(self, split: str) -> np.ndarray:
        """(examples of `split`,) int64: the 'index' of each example `split` reads."""
        return np.flatnonzero(self._selected(split)).astype(np.int64)

    def paths(self, split: str) -> np.ndarray:
        """(examples of the base split,) str: the file of each 'index'."""
        self.check_split(split)
        return self._files[source_lib.base_split(split)][0].astype(str)

    def _selected(self, split: str) -> np.ndarray:
        """(examples of the base split,) bool: those `split` (maybe a TFDS slice) reads."""
        self.check_split(split)
        base = source_lib.base_split(split)
        count = len(self._files[base][0])
        if split == base:
            return np.ones([count], bool)
        infos = {name: tfds.core.SplitInfo(name=name, shard_lengths=[len(files[0])], num_bytes=0)
                 for name, files in self._files.items()}
        try:
            parts = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
        except (ValueError, AssertionError) as e:
            raise ValueError(f'{self.name}: cannot read split {split!r} ({str(e).splitlines()[0]})'
                             f'; use a split name or a TFDS slice such as {base}[:50] or '
                             f'{base}[:10%] of its {count} examples.') from e
        selected = np.zeros([count], bool)
        for part in parts:
            if part.splitname != base:
                raise ValueError(f'{self.name}: split {split!r} mixes splits; slice one split.')
            selected[part.from_ or 0:count if part.to is None else part.to] = True
        return selected

    def num_examples(self, split: str) -> int:
        return int(self._selected(split).sum())

    def labels(self, split: str) -> np.ndarray:
        selected = self._selected(split)
        labels = self._files[source_lib.base_split(split)][1].copy()
        labels[~selected] = -1  # outside the slice
        return labels

    def as_dataset(self, split: str, shuffle_files: bool = False, seed: int = 0,
                   input_context: Optional[tf.distribute.InputContext] = None,
                   decode: bool = True) -> tf.data.Dataset:
        selected = self._selected(split)
        paths, labels = self._files[source_lib.base_split(split)]
        ds = tf.data.Dataset.from_tensor_slices({
            'path': paths[selected].astype(str), 'label': labels[selected],
            'index': np.flatnonzero(selected).astype(np.int64)})
        ds = source_lib.shard_by_index(ds, input_context)  # before reading: read only ours
        if shuffle_files:
            ds = ds.shuffle(len(paths), seed=seed)
        read = augment.decode_rgb if decode else tf.identity
        ds = ds.map(lambda ex: {'image': read(tf.io.read_file(ex['path'])),
                                'label': ex['label'], 'index': ex['index']},
                    num_parallel_calls=tf.data.AUTOTUNE)
        # Every file decoded when the source was made (or at an earlier start: the manifest);
        # a file changed or removed since then is dropped (and logged) rather than ending the
        # epoch.
        return ds.ignore_errors(log_warning=True)


class FolderSource(FilesSource):
    """Images in a folder (see the module docstring for the layouts)."""

    def __init__(self, root: str, manifest_dir: Optional[str] = None, rescan: bool = False,
                 share: manifest.Share = manifest.Share()):
        """Lists the images under `root` and drops those that do not decode.

        Args:
          root: the image folder.
          manifest_dir, rescan, share: as in FilesSource.

        Raises:
          FileNotFoundError: `root` is not a directory.
          ValueError: a split folder holds no readable JPEG or PNG image, class folders reach
            the same images twice through links, or the processes of `share` list different
            files.
        """
        if not os.path.isdir(root):
            raise FileNotFoundError(f'Image folder {root} does not exist.')
        roots = _split_roots(root)
        _check_links(root, roots)
        class_names = sorted({c for p in roots.values() for c in _class_folders(p)})
        where = {split: f'{path} (looked for {", ".join(IMAGE_EXTENSIONS)} files, in class '
                        f'sub-folders or directly in it)' for split, path in roots.items()}
        super().__init__(root, {split: _scan_split(path, class_names)
                                for split, path in roots.items()}, class_names, where,
                         root=root, manifest_dir=manifest_dir, rescan=rescan, share=share)


class FileListSource(FilesSource):
    """The images a text file lists, one path a line (see the module docstring)."""

    def __init__(self, list_path: str, share: manifest.Share = manifest.Share()):
        """Reads the list and validates every image on it (no manifest: every file decoded;
        `share` as in FilesSource).

        Raises:
          FileNotFoundError: the list does not exist.
          ValueError: it names no readable image.
        """
        if not os.path.isfile(list_path):
            raise FileNotFoundError(f'Image list {list_path} does not exist (a text file '
                                    f'naming one image a line).')
        base = os.path.dirname(os.path.abspath(list_path))
        with open(list_path, encoding='utf-8') as f:
            lines = [line.strip() for line in f]
        paths = [os.path.join(base, os.path.expanduser(line)) for line in lines
                 if line and not line.startswith('#')]
        super().__init__(list_path, {'train': (paths, [-1] * len(paths))}, (),
                         {'train': f'the list {list_path} ({len(paths)} lines name a file)'},
                         share=share)
