"""Test set-up: CPU only, two logical CPU devices, fixed seeds, quiet TensorFlow.

Everything here runs before TensorFlow is imported by any test module, because
logical devices can only be configured before the runtime initialises.
"""
import atexit
import os
import random
import shutil
import tempfile

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # hide GPUs: tests are CPU-only
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN reorders sums; oracles want plain fp32
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
