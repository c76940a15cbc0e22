"""The holdout curve of one run: top-1 of each kept checkpoint on the holdout and, for a
student, how often it agrees with its teacher there. Run as a child process by the study:

    python -m bench.semisup_study.curves MODEL_DIR OUT_JSON [TEACHER_DIR]

It reads the run's config.json (what run.py wrote), so it evaluates the network as trained.
"""
import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_config(model_dir: str, split: str):
    """The run's configuration as run.py wrote it (config.json), evaluating on `split`."""
    from data.config import DataConfig
    from tf2 import config as config_lib
    with open(os.path.join(model_dir, "config.json")) as f:
        raw = json.load(f)["data"]
    raw["crop_area_range"] = tuple(raw["crop_area_range"])
    data = dataclasses.replace(DataConfig(**raw), eval_split=split)
    return config_lib.load_run_config(os.path.join(model_dir, "config.json"), data=data)


def _predict(model, images):
    import numpy as np
    from tf2 import model as model_lib
    return np.concatenate([model(x, training=False)[model_lib.LOGITS_SUP].numpy().argmax(-1)
                           for x in images])


def eval_images(cfg):
    """(source, [image batches], labels (n,)) of cfg.data.eval_split as run.py's evaluation
    reads it, with the run's precision set: the network as trained and as run.py saw it (a
    float32 copy of a bf16-trained network flips the argmax of near-tied logits)."""
    import numpy as np
    import tensorflow as tf
    from data import datasets, pipeline
    tf.keras.mixed_precision.set_global_policy(cfg.precision)
    source = datasets.load(cfg.data)
    images, labels = [], []
    for i, batch in enumerate(pipeline.eval_input_fn(source, cfg.data, cfg.eval_batch_size)(
            tf.distribute.InputContext())):
        if cfg.eval_steps and i >= cfg.eval_steps:
            break
        images.append(batch["image"])
        labels.append(batch["label"].numpy())
    return source, images, np.concatenate(labels)


def restored(cfg, num_classes: int, prefix: str):
    """The run's network with the weights of checkpoint `prefix`."""
    from checkpoints import manager as ckpt_lib
    from tf2 import model as model_lib
    model = model_lib.build_model(cfg.model, cfg.head, image_size=cfg.data.image_size,
                                  num_classes=num_classes)
    ckpt_lib.restore_objects(prefix, model=model)
    return model


def curve(model_dir: str, teacher_dir: str = None):
    """[{'step', 'top1', 'agreement' (with a teacher)}] over the run's kept checkpoints."""
    import numpy as np
    import tensorflow as tf
    cfg = run_config(model_dir, "holdout")
    source, images, labels = eval_images(cfg)
    teacher = None
    if teacher_dir:
        from stages import distill
        teacher = distill.Teacher(teacher_dir, cfg, source.num_classes)
        teacher_pred = np.concatenate([teacher(x).numpy().argmax(-1) for x in images])
    state = tf.train.get_checkpoint_state(model_dir)
    out = []
    for prefix in state.all_model_checkpoint_paths:
        pred = _predict(restored(cfg, source.num_classes, prefix), images)
        point = {"step": int(prefix.rsplit("-", 1)[-1]), "top1": float(np.mean(pred == labels))}
        if teacher is not None:
            point["agreement"] = float(np.mean(pred == teacher_pred))
        out.append(point)
    return out


def main(argv):
    if len(argv) not in (3, 4):
        raise SystemExit("usage: python -m bench.semisup_study.curves MODEL_DIR OUT_JSON "
                         "[TEACHER_DIR]")
    from bench.harness import write_json
    write_json(argv[2], curve(argv[1], argv[3] if len(argv) == 4 else None))


if __name__ == "__main__":
    main(sys.argv)
