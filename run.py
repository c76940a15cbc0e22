"""SimCLRv2 in TensorFlow 2: pretrain, fine-tune, distill, evaluate.

    python run.py --mode=train --train_mode=pretrain            # embedded Fashion-MNIST, CPU
    python run.py --train_mode=finetune --checkpoint=runs/pretrain
    python run.py --train_mode=distill --teacher=runs/finetune
    python run.py --flagfile=flags/presets/imagenet_r50_pretrain.cfg --data_dir=...

Flags are parsed and validated first (a bad value exits with status 2 and one line naming
it); only then is TensorFlow asked to build anything.
"""
import os
import sys

from absl import app, logging

from flags import configs, definitions, validate

FLAGS = definitions.FLAGS

NEXT_STAGE = {
    "pretrain": "python run.py --train_mode=finetune --checkpoint={model_dir}",
    "finetune": "python run.py --train_mode=distill --teacher={model_dir}",
    "distill": "python run.py --mode=eval --train_mode=distill --model_dir={model_dir}",
}


def _fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _stage_module(train_mode):
    from tf2 import distill, finetune, pretrain
    return {"pretrain": pretrain, "finetune": finetune, "distill": distill}[train_mode]


def _setup(cfg, strategy):
    """Writes config.json and flags.json once (chief), and sets the precision policy."""
    import keras
    from checkpoints import manager as ckpt_lib
    from tf2 import config as cfg_lib
    from tf2 import distribute
    keras.mixed_precision.set_global_policy(cfg.precision)
    if distribute.is_chief(strategy):
        os.makedirs(cfg.model_dir, exist_ok=True)
        ckpt_lib.write_json_atomic(os.path.join(cfg.model_dir, "config.json"),
                                   cfg_lib.run_config_to_dict(cfg))
        ckpt_lib.write_json_atomic(os.path.join(cfg.model_dir, "flags.json"),
                                   {f.name: f.value for f in FLAGS.get_key_flags_for_module(
                                       definitions)})


def _report(cfg, result=None):
    print(f"\nmodel_dir:   {cfg.model_dir}")
    print(f"SavedModel:  {cfg.export_dir}/<step>")
    print(f"TensorBoard: tensorboard --logdir {cfg.model_dir}")
    if result:
        print(f"eval:        top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f} "
              f"on {result['num_examples']} examples")
    print(f"next:        {NEXT_STAGE[cfg.train_mode].format(model_dir=cfg.model_dir)}")


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    if FLAGS.use_tpu:
        FLAGS.distribution = "tpu"
    try:
        validate.validate(FLAGS)
        from data import datasets, pipeline
        from tf2 import distribute, evaluate
        source = datasets.load(configs.data_config(FLAGS))
        strategy = distribute.make_strategy(FLAGS.distribution, FLAGS.tpu or FLAGS.tpu_name,
                                            FLAGS.tpu_zone, FLAGS.gcp_project)
        cfg = configs.run_config(FLAGS, pipeline.num_train_examples(
            source, configs.data_config(FLAGS), FLAGS.train_mode))
        validate.check_batch_divides(cfg.train.train_batch_size, strategy.num_replicas_in_sync)
        validate.check_batch_divides(cfg.eval_batch_size, strategy.num_replicas_in_sync,
                                     "eval_batch_size")
    except (validate.FlagError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    _setup(cfg, strategy)
    chief = distribute.is_chief(strategy)
    if FLAGS.mode in ("train", "train_then_eval"):
        _stage_module(cfg.train_mode).run(cfg, strategy, source, is_chief=chief)
    result = None
    if FLAGS.mode in ("eval", "train_then_eval"):
        result = evaluate.run(cfg, strategy, source, watch=FLAGS.mode == "eval",
                              is_chief=chief)
    if chief:
        _report(cfg, result)


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    app.run(main)
