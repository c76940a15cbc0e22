"""Test set-up: CPU only, two logical CPU devices, fixed seeds, quiet TensorFlow, hermetic.

Everything here runs before TensorFlow is imported by any test module, because
logical devices can only be configured before the runtime initialises.

Hermetic: no test may read or write a user's default paths, the working tree's runs/ (run.py's
default --model_dir) and TFDS's default data_dir (~/tensorflow_datasets). TFDS_DATA_DIR (below)
and TMPDIR (`_hermetic`), which run.py children inherit, point at the session's own temporary
folders, and the session fails if either default path changed while it ran.
"""
import atexit
import os
import random
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # hide GPUs: tests are CPU-only
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN reorders sums; oracles want plain fp32
# Read before it is moved below: the folder a user's runs prepare data in.
USER_TFDS_DIR = Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")
# TFDS's default data directory (where image-folder manifests go without a data_dir) is a
# temporary one for the whole session and the run.py processes it starts: tests stay hermetic.
_DEFAULT_DATA_DIR = tempfile.mkdtemp(prefix="tfds_default_")
os.environ["TFDS_DATA_DIR"] = _DEFAULT_DATA_DIR
atexit.register(shutil.rmtree, _DEFAULT_DATA_DIR, ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

SEED = 1234
REPO = Path(__file__).resolve().parents[1]


def _fingerprint(path: Path):
    """(name, size, mtime) of everything under `path`, sorted; None when it does not exist."""
    if not path.exists():
        return None
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in path.rglob("*"))


@pytest.fixture(scope="session", autouse=True)
def _hermetic(tmp_path_factory):
    """Temporary files in the session's folder; the default paths must come out unchanged."""
    guarded = {"the working tree's runs/": REPO / "runs",
               "TFDS's default data_dir": USER_TFDS_DIR}
    before = {name: _fingerprint(path) for name, path in guarded.items()}
    # TensorFlow's autograph files and TFDS's empty temporary folders, ours and the children's,
    # go where pytest removes them after a passing session (not into /tmp for good).
    temp = tmp_path_factory.getbasetemp() / "tmp"
    temp.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = tempfile.tempdir = str(temp)
    yield
    changed = [f"{name} ({path})" for name, path in guarded.items()
               if _fingerprint(path) != before[name]]
    if changed:
        pytest.fail(f"the tests changed {' and '.join(changed)}: a test used a default path "
                    "(give it --model_dir / --data_dir under tmp_path), or another program "
                    "wrote there while the tests ran", pytrace=False)


@pytest.fixture(autouse=True)
def _fixed_seeds():
    random.seed(SEED)
    np.random.seed(SEED)
    tf.random.set_seed(SEED)
    import keras
    keras.utils.set_random_seed(SEED)
    # Every new MirroredStrategy starts its collective keys at the same number and TensorFlow
    # remembers the shape it saw under each key, so a later test gathering another shape would
    # fail; moving the key base (as TensorFlow's own test helpers do) keeps tests apart.
    tf.distribute.MirroredStrategy._collective_key_base += 100000
    yield


@pytest.fixture
def two_replicas():
    """A MirroredStrategy over the two logical CPUs (collective keys: see _fixed_seeds)."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def run_flags():
    """`parse(*args)`: run.py's absl flags parsed from a command line; unparsed after."""
    import run

    def parse(*args):
        run.FLAGS.unparse_flags()
        run.FLAGS(["run.py", *args])
        return run.FLAGS
    yield parse
    run.FLAGS.unparse_flags()
