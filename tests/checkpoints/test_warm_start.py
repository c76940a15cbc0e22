"""checkpoints/warm_start.check_stem: a checkpoint of the other stem (CIFAR vs ImageNet) is
named before any restore, whatever holds it (checkpoint prefix, model_dir, SavedModel)."""
import pytest
import tensorflow as tf

from checkpoints import warm_start


def _checkpoint(tmp_path, name, stem_shape):
    """A checkpoint whose only RGB-input kernel has `stem_shape`, beside another 4-D one."""
    ckpt = tf.train.Checkpoint(stem=tf.Variable(tf.zeros(stem_shape)),
                               block=tf.Variable(tf.zeros([3, 3, 8, 8])))
    return ckpt.write(str(tmp_path / name / "ckpt-1"))


@pytest.mark.parametrize("stem_shape, cifar_stem, sk_ratio, refused", [
    ((7, 7, 3, 8), True, 0.0, "trained with the ImageNet stem"),   # 64 px run, fine-tuned at 32
    ((3, 3, 3, 8), False, 0.0, "trained with the CIFAR stem"),     # 32 px run, fine-tuned at 64
    ((3, 3, 3, 4), True, 0.0625, "trained with the ImageNet stem"),  # SK deep stem: width / 2
    ((7, 7, 3, 8), False, 0.0, None), ((3, 3, 3, 8), True, 0.0, None),
    ((3, 3, 3, 4), False, 0.0625, None),
    ((7, 7, 3, 16), True, 0.0, None),  # another width: the restore's own check names it
])
def test_check_stem(tmp_path, stem_shape, cifar_stem, sk_ratio, refused):
    prefix = _checkpoint(tmp_path, "run", stem_shape)
    for path in (prefix, str(tmp_path / "run")):
        if refused:
            with pytest.raises(ValueError, match=f"{refused}.*pass the --image_size"):
                warm_start.check_stem(path, 0.125, sk_ratio, cifar_stem)
        else:
            warm_start.check_stem(path, 0.125, sk_ratio, cifar_stem)


def test_check_stem_leaves_unreadable_sources_to_the_warm_start(tmp_path):
    (tmp_path / "empty").mkdir()
    warm_start.check_stem(str(tmp_path / "empty"), 1, 0.0, True)  # no checkpoint: no verdict
