"""SimCLRv2 in TensorFlow 2: pretrain, fine-tune, distill, evaluate.

    .venv/bin/python run.py --mode=train --train_mode=pretrain       # embedded Fashion-MNIST, CPU
    .venv/bin/python run.py --train_mode=finetune --checkpoint=runs/pretrain
    .venv/bin/python run.py --train_mode=distill --teacher=runs/finetune
    .venv/bin/python run.py --flagfile=flags/presets/imagenet_r50_pretrain.cfg --data_dir=...

Flags are parsed and validated first (a bad value exits with status 2 and one line naming
it); only then is TensorFlow asked to build anything. A run that fails later (NaN loss, a
checkpoint that does not fit) exits with status 1 and one line saying why.
"""
import dataclasses
import os
import sys

# TensorFlow's C++ INFO and WARNING lines would bury the progress lines; set it to 0 to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, logging  # noqa: E402
from absl import flags as absl_flags  # noqa: E402

from flags import commands, configs, consistency, definitions, validate  # noqa: E402

FLAGS = definitions.FLAGS

# --help and --helpshort list the main module's key flags: make ours theirs.
absl_flags.adopt_module_key_flags(definitions)


def _fail(message: str, status: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def _quiet_libraries():
    """Python-side TensorFlow and TFDS warnings and TFDS progress bars off.

    They are about the libraries' own deprecations, not the run; our warnings stay.
    """
    import logging as std_logging

    import tensorflow as tf
    import tensorflow_datasets as tfds
    tf.get_logger().setLevel("ERROR")
    tfds.disable_progress_bar()
    logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= std_logging.ERROR
        or f"{os.sep}tensorflow_datasets{os.sep}" not in record.pathname)


def _stage_module(train_mode):
    from stages import distill, finetune, pretrain
    return {"pretrain": pretrain, "finetune": finetune, "distill": distill}[train_mode]


def _trained_config(cfg):
    """mode=eval: the network, stage and length of the run that wrote model_dir/config.json.

    Evaluation must rebuild that network and know its last step whatever flags are given now.
    """
    from tf2 import config as cfg_lib
    path = os.path.join(cfg.model_dir, "config.json")
    if not os.path.exists(path):
        return cfg
    saved = cfg_lib.load_run_config(path, data=cfg.data)
    return dataclasses.replace(cfg, model=saved.model, head=saved.head, train=saved.train,
                               train_mode=saved.train_mode, optimizer=saved.optimizer,
                               class_names=saved.class_names,
                               lineareval_while_pretraining=saved.lineareval_while_pretraining)


def _setup(cfg, seed, deterministic):
    """Seeds, determinism and precision."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)  # initialisation; the input stream has its own seeds
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(cfg.precision)


def _run_record(cfg, chief):
    """The chief's RunRecord (config.json, flags.json with the values used, starts.jsonl).

    The training loop writes it once the resume has succeeded, never before: a refused run
    must not overwrite the record of the run whose checkpoints are in model_dir.
    """
    if FLAGS.mode == "eval" or not chief:
        return None
    from checkpoints import record
    from tf2 import config as cfg_lib
    names = [f.name for f in FLAGS.get_key_flags_for_module(definitions)]
    return record.RunRecord(cfg.model_dir, cfg_lib.run_config_to_dict(cfg),
                            configs.used_values(FLAGS, names), sys.argv)


def _claim_model_dir(cfg, chief):
    """The chief's lock on model_dir (see checkpoints/model_dir.py), debris of dead writers gone.

    Returns the Claim (keep it referenced: the lock lasts as long as the process), or None on
    non-chief workers, which never write into model_dir.
    """
    from checkpoints import model_dir
    if not chief:
        return None
    roles = {"train": [model_dir.TRAIN], "eval": [model_dir.EVAL],
             "train_then_eval": [model_dir.TRAIN, model_dir.EVAL]}[FLAGS.mode]
    try:
        claim = model_dir.Claim(cfg.model_dir, roles)
    except model_dir.ModelDirBusyError as e:
        _fail(f"--model_dir={cfg.model_dir}: {e}. Wait for it to end or choose another "
              "--model_dir.")
    except model_dir.NotWritableError as e:
        _fail(f"--model_dir={cfg.model_dir}: {e}; choose a writable --model_dir.")
    for path in claim.clean_debris():
        logging.warning("Removed %s, left by a save that was interrupted.", path)
    return claim


def _check_sources():
    """--checkpoint and --teacher SavedModels must read whole (FlagError naming the file)."""
    from checkpoints import export as export_lib
    from checkpoints import integrity
    for name in ("checkpoint", "teacher"):
        path = FLAGS[name].value
        if path and FLAGS.mode != "eval" and export_lib.is_saved_model_dir(path):
            _named(integrity.check_saved_model, name)(path)


def _report(cfg, result=None, labelled=True):
    from checkpoints import export as export_lib
    steps = export_lib.exported_steps(cfg.export_dir)
    exported = os.path.join(cfg.export_dir, str(steps[-1])) if steps else "(none)"
    print(f"\nmodel_dir:   {cfg.model_dir}")
    print(f"SavedModel:  {exported}")
    print(f"TensorBoard: {commands.tensorboard_command(cfg.model_dir)}")
    if result:
        print(f"eval:        top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f} "
              f"on {result['num_examples']} examples (step {result['global_step']})")
    _print_next(cfg, labelled)


def _print_next(cfg, labelled):
    """The next stage's command, or what is done when a distilled model was evaluated."""
    command = commands.next_command(FLAGS, cfg.model_dir, labelled)
    if command is None:
        print("done:        the three stages are complete: the SavedModel above is the "
              "distilled model (a TF Hub module; README, 'Checkpoints, resuming, SavedModels'); "
              "--eval_split=<split> evaluates it on another split.", flush=True)
        return
    if f"--dataset={commands.LABELLED}" in command:
        print(f"note:        fine-tuning needs a labelled data set, and {FLAGS.dataset} has no "
              f"classes: replace {commands.LABELLED} with folder:/path (one sub-folder per "
              "class) or a TFDS name.")
    print(f"next:        {command}", flush=True)


def _print_banner(cfg, source, chief):
    """Before the long silence of reading the data and tracing: what runs, on what, where.

    Every worker composes it (counting the parameters builds a network), only the chief
    prints it: a multi-worker run whose workers built different things before their first
    collective would pair the wrong collective ops.
    """
    from stages import banner
    text = "\n".join(banner.lines(cfg, source, FLAGS.mode)) + "\n"
    if chief:
        print(text, flush=True)


def _with_command(message: str) -> str:
    """`message` (which says to run the same command again) and that command, as it runs."""
    return f"{message} The command: {commands.this_command(sys.argv)}"


def _named(fn, flag_name):
    """fn, whose ValueError / FileNotFoundError becomes a FlagError naming --flag_name."""
    def call(*args):
        try:
            return fn(*args)
        except (ValueError, FileNotFoundError) as e:
            raise validate.FlagError(f"--{flag_name}={FLAGS[flag_name].value}: {e}") from e
    return call


def _resolve_precision(cfg, strategy):
    """--precision=auto becomes the policy this hardware runs fastest (tf2/precision.py)."""
    from tf2 import precision
    choice = precision.detect(cfg.precision, strategy)
    return dataclasses.replace(cfg, precision=choice.policy, precision_reason=choice.reason)


def _warn_jit_on_cpu(cfg, strategy):
    from tf2 import precision
    warning = validate.jit_warning(FLAGS, precision.device_kind(strategy))
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)


def _eval_split(source):
    """--eval_split, or the split the data set has (test, validation, holdout) when not given.

    Checked now when this run evaluates or monitors kNN (not after hours of training); a
    training-only run on data without an evaluation split gets None.
    """
    from data import datasets
    split = FLAGS.eval_split
    needed = FLAGS.mode != "train" or FLAGS.knn_every_steps > 0
    if split is None:
        try:
            split = datasets.default_eval_split(source)
        except ValueError as e:
            if FLAGS.holdout_fraction > 0:
                split = "holdout"
            elif not needed:
                return None
            else:
                raise validate.FlagError(f"--eval_split is not given and {e}") from e
    if needed and split != "holdout":  # the holdout is a part of train_split, checked there
        _named(source.num_examples, "eval_split")(split)
    return split


def _check_checkpoint_stem():
    """--checkpoint must have the stem that --image_size builds (exit 2, not a shape error)."""
    if not FLAGS.checkpoint or FLAGS.mode == "eval":
        return
    from checkpoints import warm_start
    try:
        warm_start.check_stem(FLAGS.checkpoint, FLAGS.width_multiplier, FLAGS.sk_ratio,
                              cifar_stem=FLAGS.image_size <= 32)
    except (ValueError, FileNotFoundError) as e:
        raise validate.FlagError(
            f"--checkpoint={FLAGS.checkpoint} at --image_size={FLAGS.image_size}: {e}") from e


def _configure():
    """Validates the flags, loads the data and picks the strategy: (cfg, strategy, source)."""
    validate.validate(FLAGS)
    _quiet_libraries()
    from data import datasets, pipeline
    from tf2 import distribute
    # The strategy first: MultiWorkerMirroredStrategy and TPUs must configure TensorFlow before
    # it runs anything (reading the data would start it).
    strategy = distribute.make_strategy(FLAGS.distribution, FLAGS.tpu or FLAGS.tpu_name,
                                        FLAGS.tpu_zone, FLAGS.gcp_project)
    _check_checkpoint_stem()
    source = _named(datasets.load, "dataset")(configs.data_config(FLAGS))
    _named(source.num_examples, "train_split")(FLAGS.train_split)  # the split, or its slice
    _check_sources()
    cfg = configs.run_config(FLAGS, _named(pipeline.num_train_examples, "dataset")(
        source, configs.data_config(FLAGS), FLAGS.train_mode), source.class_names)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data,
                                                            eval_split=_eval_split(source)))
    if FLAGS.mode == "eval":
        cfg = _trained_config(cfg)
    for warning in consistency.check(FLAGS, cfg, source):
        logging.warning(warning)
    cfg = _resolve_precision(cfg, strategy)
    _warn_jit_on_cpu(cfg, strategy)
    validate.check_batch_divides(cfg.train.train_batch_size, strategy.num_replicas_in_sync)
    validate.check_batch_divides(cfg.eval_batch_size, strategy.num_replicas_in_sync,
                                 "eval_batch_size")
    return cfg, strategy, source


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    if FLAGS.use_tpu:
        FLAGS.distribution = "tpu"
    try:
        cfg, strategy, source = _configure()
    except (validate.FlagError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    import tensorflow as tf
    from checkpoints import manager as ckpt_lib
    from tf2 import distribute
    from stages import evaluate, loop
    chief = distribute.is_chief(strategy)
    claim = _claim_model_dir(cfg, chief)  # noqa: F841  held until the process ends
    _print_banner(cfg, source, chief)  # before _setup seeds Keras: it builds a network
    _setup(cfg, FLAGS.seed, FLAGS.deterministic)
    result = None
    try:
        if FLAGS.mode in ("train", "train_then_eval"):
            _stage_module(cfg.train_mode).run(cfg, strategy, source, is_chief=chief,
                                              record=_run_record(cfg, chief))
        if FLAGS.mode in ("eval", "train_then_eval"):
            result = _evaluate(cfg, strategy, source, chief)
    except (loop.NonFiniteLossError, ckpt_lib.UnreadableCheckpointError, ckpt_lib.DiskFullError,
            evaluate.NoCheckpointError, FileNotFoundError, ValueError) as e:
        logging.info("Traceback (shown with --verbosity=0):", exc_info=True)
        _fail(str(e), status=1)
    except distribute.CLUSTER_ERRORS as e:  # a worker died: say so, not a collective traceback
        logging.info("Traceback (shown with --verbosity=0):", exc_info=True)
        _fail(_with_command(distribute.cluster_error_message(e, cfg.model_dir)), status=1)
    except SystemExit as e:  # SIGTERM: stages/loop.py saved a checkpoint and says to run again
        if isinstance(e.code, str):
            raise SystemExit(_with_command(e.code)) from None
        raise
    except (tf.errors.ResourceExhaustedError, OSError) as e:  # a full disk while exporting
        full = ckpt_lib.disk_full_error(e, cfg.model_dir, "into it")
        if full is None:
            raise
        logging.info("Traceback (shown with --verbosity=0):", exc_info=True)
        _fail(str(full), status=1)
    if chief:
        _report(cfg, result, labelled=source.num_classes > 0)


def _evaluate(cfg, strategy, source, chief):
    """evaluate.run; mode=eval says first when it has to wait for a checkpoint, and how long."""
    import tensorflow as tf
    from stages import evaluate
    watch = FLAGS.mode == "eval"
    if watch and tf.train.latest_checkpoint(cfg.model_dir) is None:
        print(f"Waiting up to {FLAGS.eval_timeout} s for a checkpoint in {cfg.model_dir} "
              "(set the wait with --eval_timeout)...", flush=True)
    try:
        return evaluate.run(cfg, strategy, source, watch=watch, is_chief=chief,
                            timeout=FLAGS.eval_timeout)
    except evaluate.NoCheckpointError as e:
        raise evaluate.NoCheckpointError(
            f"{e} (--eval_timeout={FLAGS.eval_timeout}): train into this --model_dir first, "
            "or wait longer with a larger --eval_timeout.") from e


def _parse_flags(argv):
    """absl's parser, but an unknown flag or a malformed value exits like any bad flag."""
    try:
        return FLAGS(argv)
    except absl_flags.Error as e:
        _fail(f"{e} (see --helpshort)")


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    app.run(main, flags_parser=_parse_flags)
