"""The manifest of an image folder: reuse, change detection, rescans, concurrent writers,
read-only folders, unreadable files reported once, a check shared by several processes."""
import io
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data import datasets
from data import folders
from data import manifest
from data import pipeline
from data.config import DataConfig
from tests import hang_guard

REPO = Path(__file__).resolve().parents[2]


def _png(path: Path, value: int, size=(3, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(buffer, format='PNG')
    path.write_bytes(buffer.getvalue())


def _folder(root: Path) -> Path:
    """Classes a (4 images) and b (5 images, one not an image), in file order a0..a3, b0..b4."""
    for i in range(4):
        _png(root / 'a' / f'a{i}.png', 10 + i)
    for i in range(5):
        _png(root / 'b' / f'b{i}.png', 20 + i)
    (root / 'b' / 'b2.png').write_bytes(b'not a png')
    return root


@pytest.fixture
def decoded(monkeypatch):
    """Every path data.folders decodes at scan time, call by call."""
    calls = []
    original = folders._decodes

    def recording(paths):
        calls.append([os.path.basename(p) for p in paths])
        return original(paths)
    monkeypatch.setattr(folders, '_decodes', recording)
    return calls


def _load(root, store, rescan=False):
    return folders.FolderSource(str(root), manifest_dir=store and str(store), rescan=rescan)


def _contents(source):
    """What a run reads: (paths, labels) of the train split, its count and its pixel sums."""
    examples = list(source.as_dataset('train').as_numpy_iterator())
    return ([os.path.basename(p) for p in source._files['train'][0]],
            source.labels('train').tolist(), source.num_examples('train'),
            [int(ex['image'].sum()) for ex in examples])


def test_second_start_decodes_nothing_and_reads_the_same(tmp_path, decoded):
    root, store = _folder(tmp_path / 'images'), tmp_path / 'store'
    first = _load(root, store)
    assert sorted(decoded[0]) == ['a0.png', 'a1.png', 'a2.png', 'a3.png', 'b0.png', 'b1.png',
                                  'b2.png', 'b3.png', 'b4.png']
    second = _load(root, store)
    assert decoded[1:] == [[]]  # nothing decoded on the second start
    without = _load(root, None)  # no manifest at all: today's scan
    # Oracle: the files written, the unreadable one left out, labels by class folder.
    expected = (['a0.png', 'a1.png', 'a2.png', 'a3.png', 'b0.png', 'b1.png', 'b3.png',
                 'b4.png'], [0, 0, 0, 0, 1, 1, 1, 1], 8,
                [12 * v * 3 for v in (10, 11, 12, 13, 20, 21, 23, 24)])
    assert _contents(first) == _contents(second) == _contents(without) == expected
    saved = manifest.load(manifest.location(str(store), str(root)), str(root))
    assert saved['paths'] == [f'a/a{i}.png' for i in range(4)] + [f'b/b{i}.png' for i in range(5)]
    assert saved['ok'].tolist() == [True] * 6 + [False] + [True] * 2
    assert saved['sizes'][0] == os.path.getsize(root / 'a' / 'a0.png')


def test_pipeline_counts_equal_with_and_without_the_manifest(tmp_path):
    root = _folder(tmp_path / 'images')
    cfg = DataConfig.tiny(dataset=f'folder:{root}', data_dir=str(tmp_path / 'd'),
                          holdout_fraction=0.25, labels_per_class=2)
    counted = []
    for source in (datasets.load(cfg), datasets.load(cfg), folders.FolderSource(str(root))):
        counted.append([pipeline.num_train_examples(source, cfg, mode)
                        for mode in ('pretrain', 'finetune', 'distill')]
                       + [pipeline.num_eval_examples(source, cfg, 'holdout'),
                          pipeline.holdout_mask(source, cfg).tolist(),
                          pipeline.labelled_mask(source, cfg).tolist()])
    # 8 readable images, round(0.25 * 4) = 1 held out per class, 2 labels per class.
    assert counted[0] == counted[1] == counted[2]
    assert counted[0][:4] == [6, 4, 6, 2]
    assert os.path.exists(manifest.location(datasets.manifest_dir(cfg), str(root)))


def test_changed_added_and_removed_files_are_checked(tmp_path, decoded):
    root, store = _folder(tmp_path / 'images'), tmp_path / 'store'
    _load(root, store)
    _png(root / 'a' / 'a1.png', 99, size=(5, 5))  # changed content and size
    stat = os.stat(root / 'a' / 'a2.png')
    os.utime(root / 'a' / 'a2.png', ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    (root / 'a' / 'a3.png').write_bytes(b'broken now')
    _png(root / 'b' / 'b2.png', 22)  # the unreadable file repaired
    _png(root / 'c' / 'c0.png', 30)  # a new class
    os.remove(root / 'b' / 'b4.png')
    source = _load(root, store)
    assert sorted(decoded[1]) == ['a1.png', 'a2.png', 'a3.png', 'b2.png', 'c0.png']
    assert source.class_names == ('a', 'b', 'c')
    assert _contents(source) == _contents(_load(root, None))
    assert _contents(source)[:3] == (['a0.png', 'a1.png', 'a2.png', 'b0.png', 'b1.png', 'b2.png',
                                      'b3.png', 'c0.png'], [0, 0, 0, 1, 1, 1, 1, 2], 8)
    saved = manifest.load(manifest.location(str(store), str(root)), str(root))
    assert 'b/b4.png' not in saved['paths'] and saved['paths'][-1] == 'c/c0.png'
    assert _load(root, store) and decoded[-1] == []  # the new manifest is whole


def test_rescan_and_a_deleted_manifest_check_every_file(tmp_path, decoded, run_flags):
    root, store = _folder(tmp_path / 'images'), tmp_path / 'store'
    _load(root, store)
    _load(root, store, rescan=True)
    os.remove(manifest.location(str(store), str(root)))
    _load(root, store)
    assert [len(c) for c in decoded] == [9, 9, 9]
    flags = run_flags('--rescan_folder', f'--dataset=folder:{root}')
    from flags import configs
    assert configs.data_config(flags).rescan_folder is True
    assert configs.data_config(run_flags()).rescan_folder is False


def test_unreadable_file_named_once_and_listed(tmp_path, caplog):
    root, store = _folder(tmp_path / 'images'), tmp_path / 'store'
    listing = manifest.unreadable_list(manifest.location(str(store), str(root)))
    with caplog.at_level(logging.WARNING):
        _load(root, store)
    first, _ = caplog.text, caplog.clear()
    with caplog.at_level(logging.WARNING):
        _load(root, store)
    assert f'Skipping unreadable image {root}/b/b2.png' in first
    assert f'Skipped 1 unreadable image(s) of 9; listed in {listing}' in first
    assert 'b2.png' not in caplog.text  # not named again...
    assert f'Skipping 1 unreadable image(s) of {root} found by an earlier scan; listed in ' \
           f'{listing}' in caplog.text  # ...but counted
    assert Path(listing).read_text() == f'{root}/b/b2.png\n'
    _png(root / 'b' / 'b2.png', 22)
    _load(root, store)
    assert not os.path.exists(listing)  # nothing unreadable any more


def _tree(root: Path):
    """Every file and folder under root with its size and modification time."""
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob('*'))


def test_read_only_image_folder(tmp_path, decoded, caplog):
    root, store = _folder(tmp_path / 'images'), tmp_path / 'store'
    before = _tree(root)  # a folder's mtime changes when anything is created in it, even briefly
    for path in [root, *root.rglob('*')]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        first, second = _load(root, store), _load(root, store)
    finally:
        for path in [root, *root.rglob('*')]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert _tree(root) == before
    assert [len(c) for c in decoded] == [9, 0]
    assert _contents(first) == _contents(second)
    # A manifest directory that cannot be made: a warning, the same examples, nothing stored.
    (tmp_path / 'file').write_text('x')
    with caplog.at_level(logging.WARNING):
        third = _load(root, tmp_path / 'file' / 'store')
    assert 'Cannot write the folder manifest' in caplog.text and 'writable --data_dir' in \
        caplog.text
    assert _contents(third) == _contents(first)


WRITER = '''
import os, sys, time
sys.path.insert(0, sys.argv[1])
from data import manifest
root, store, go = sys.argv[2], sys.argv[3], sys.argv[4]
paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)

def decodes(paths):
    time.sleep(0.05)  # widens the window in which both processes write
    return [open(p, 'rb').read(8) == b'\\x89PNG\\r\\n\\x1a\\n' for p in paths]

while not os.path.exists(go):
    time.sleep(0.001)
results = {tuple(manifest.check(root, paths, [-1] * len(paths), decodes=decodes,
                                store_dir=store, rescan=i % 2 == 0).tolist())
           for i in range(20)}
print(len(paths), results)
'''


def test_two_processes_writing_the_manifest_at_once(tmp_path):
    root, store, go = _folder(tmp_path / 'images'), tmp_path / 'store', tmp_path / 'go'
    procs = [subprocess.Popen([sys.executable, '-c', WRITER, str(REPO), str(root), str(store),
                               str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    go.write_text('')
    try:
        outputs = [p.communicate(timeout=hang_guard.HANG_GUARD) for p in procs]
    except subprocess.TimeoutExpired:
        pytest.fail(hang_guard.message("a manifest writer"))
    assert [p.returncode for p in procs] == [0, 0], outputs
    expected = [True] * 6 + [False] + [True] * 2
    assert [out for out, _ in outputs] == [f'9 {{{tuple(expected)}}}\n'] * 2
    assert 'Ignoring the unreadable folder manifest' not in outputs[0][1] + outputs[1][1]
    saved = manifest.load(manifest.location(str(store), str(root)), str(root))
    assert saved['ok'].tolist() == expected
    assert sorted(os.listdir(store)) == sorted(  # no temporary file left behind
        os.path.basename(manifest.location(str(store), str(root)))[:-4] + suffix
        for suffix in ('.npz', manifest.UNREADABLE_SUFFIX))


def _threads_sharing(count, listings, decodes, store=None):
    """manifest.check by `count` threads sharing one scan (a barrier-based all_sum)."""
    barrier, parts, results = threading.Barrier(count), {}, [None] * count

    def all_sum(index, values):
        parts[index] = values
        barrier.wait()
        total = sum(parts.values())
        barrier.wait()
        return total

    def worker(index):
        share = manifest.Share(index, count, lambda v: all_sum(index, v))
        try:
            results[index] = manifest.check(listings[index][0], listings[index][1],
                                            [-1] * len(listings[index][1]), decodes=decodes,
                                            store_dir=store, share=share)
        except ValueError as e:
            results[index] = e
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=hang_guard.HANG_GUARD)
        assert not t.is_alive(), hang_guard.message("a thread sharing the scan")
    return results


def test_processes_sharing_a_scan_each_decode_their_part(tmp_path):
    root = _folder(tmp_path / 'images')
    paths = sorted(str(p) for p in root.rglob('*.png'))
    seen = []

    def decodes(part):
        seen.append(part)
        return [Path(p).read_bytes()[:4] == b'\x89PNG' for p in part]
    results = _threads_sharing(2, [(str(root), paths)] * 2, decodes, tmp_path / 'store')
    expected = [True] * 6 + [False] + [True] * 2
    assert [r.tolist() for r in results] == [expected, expected]
    assert sorted(map(len, seen)) == [4, 5] and sorted(sum(seen, [])) == paths  # disjoint
    assert {tuple(p) for p in seen} == {tuple(paths[0::2]), tuple(paths[1::2])}
    seen.clear()
    again = _threads_sharing(2, [(str(root), paths)] * 2, decodes, tmp_path / 'store')
    assert seen == [[], []] and [r.tolist() for r in again] == [expected, expected]
    different = _threads_sharing(2, [(str(root), paths), (str(root), paths[:-1])], decodes)
    assert all(isinstance(r, ValueError) and 'list different image files' in str(r)
               for r in different)
