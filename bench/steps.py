"""The training steps the speed benchmarks time: configurations (a), (b), (c), (b224) and the
RunConfig and synthetic views of each (throughput, profile_step and vs_original share them).

Configs: (a) ResNet-18, 32 px, batch 256; (b) ResNet-50, 64 px, batch 64; (c) ResNet-50 + SK,
64 px, batch 64; (b224) ResNet-50, 224 px, batch 256, for GPUs.
"""
CONFIGS = {
    "a": dict(depth=18, sk_ratio=0.0, image_size=32, batch=256),
    "b": dict(depth=50, sk_ratio=0.0, image_size=64, batch=64),
    "c": dict(depth=50, sk_ratio=0.0625, image_size=64, batch=64),
    # (b) at ImageNet size, for a GPU: `--configs=b224 --variants=float32,mixed_float16_xla`
    "b224": dict(depth=50, sk_ratio=0.0, image_size=224, batch=256),
}
VARIANTS = {
    "float32": dict(precision="float32", jit_compile=False),
    "mixed_bfloat16": dict(precision="mixed_bfloat16", jit_compile=False),
    "xla": dict(precision="float32", jit_compile=True),
    # GPUs (loss scaling) and TPUs / CPUs with native bfloat16:
    "mixed_float16": dict(precision="mixed_float16", jit_compile=False),
    "mixed_float16_xla": dict(precision="mixed_float16", jit_compile=True),
    "mixed_bfloat16_xla": dict(precision="mixed_bfloat16", jit_compile=True),
}


def run_config(name, stage, variant, steps_per_loop):
    """The RunConfig of config `name` for `stage` ('pretrain' or 'finetune') and `variant`."""
    from data.config import DataConfig
    from tf2 import config as cfg_lib
    c, v = CONFIGS[name], VARIANTS[variant]
    return cfg_lib.RunConfig(
        model=cfg_lib.ModelConfig(resnet_depth=c["depth"], sk_ratio=c["sk_ratio"],
                                  cifar_stem=c["image_size"] <= 32, global_bn=True),
        head=cfg_lib.HeadConfig(num_classes=10, ft_proj_selector=1 if stage == "finetune"
                                else 0),
        optimizer=cfg_lib.OptimizerConfig(warmup_epochs=0),
        train=cfg_lib.TrainConfig(train_batch_size=c["batch"], train_steps=10**6,
                                  steps_per_loop=steps_per_loop),
        data=DataConfig(image_size=c["image_size"]), train_mode=stage,
        precision=v["precision"], jit_compile=v["jit_compile"])


def synthetic_batch(cfg, stage):
    """Already-augmented random views: (b, s, s, 6) to pretrain, (b, s, s, 3) to fine-tune."""
    import tensorflow as tf
    s, b = cfg.data.image_size, cfg.train.train_batch_size
    channels = 6 if stage == "pretrain" else 3
    return {"image": tf.random.uniform((b, s, s, channels), seed=1),
            "label": tf.random.uniform((b,), maxval=10, dtype=tf.int32, seed=2)}
