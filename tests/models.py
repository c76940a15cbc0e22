"""Networks for tests that need one whose every part matters, without training it."""
import keras
import numpy as np

from tf2 import model as model_lib
from tf2.config import HeadConfig, ModelConfig


def randomise_batch_norms(model, seed):
    """Moves every BN parameter and statistic off its initial value (gamma 0 or 1, etc.).

    With the initial values the inference outputs would not depend on the moving statistics,
    and zero-gamma blocks would hide their weights: a missed variable could go unnoticed.
    """
    rng = np.random.default_rng(seed)
    for v in model.variables:
        kind = v.path.rsplit("/", 1)[-1]
        if kind in ("gamma", "moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
        elif kind in ("beta", "moving_mean"):
            v.assign(rng.normal(0.0, 0.1, v.shape).astype(np.float32))


def tiny_network(image_size, num_classes, seed=0, width=0.25):
    """(model, ModelConfig, HeadConfig): a ResNet-18 (CIFAR stem up to 32 px, as the program
    builds it), BN randomised, and a head whose classes all win on some images: weights of
    stddev 1 (not 0.01), and the bias centres the logits of random colour images."""
    keras.utils.set_random_seed(seed)
    model_cfg = ModelConfig.tiny(width_multiplier=width, cifar_stem=image_size <= 32)
    head_cfg = HeadConfig.tiny(num_classes=num_classes)
    model = model_lib.build_model(model_cfg, head_cfg, image_size=image_size)
    randomise_batch_norms(model, seed)
    if model.supervised_head is not None:
        rng = np.random.default_rng(seed)
        dense = model.supervised_head.dense
        dense.kernel.assign(rng.normal(0, 1, dense.kernel.shape).astype(np.float32))
        colours = rng.uniform(0, 1, (16, 1, 1, 3)) * 0.7 + rng.uniform(
            0, 0.3, (16, image_size, image_size, 3))
        logits = model(colours.astype(np.float32), training=False)[model_lib.LOGITS_SUP]
        dense.bias.assign(dense.bias - np.mean(logits.numpy(), axis=0))
    return model, model_cfg, head_cfg
