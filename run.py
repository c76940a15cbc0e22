"""SimCLRv2 in TensorFlow 2: pretrain, fine-tune, distill, evaluate; then use the model.

    .venv/bin/python run.py --mode=train --train_mode=pretrain       # embedded Fashion-MNIST, CPU
    .venv/bin/python run.py --train_mode=finetune --checkpoint=runs/pretrain
    .venv/bin/python run.py --train_mode=distill --teacher=runs/finetune
    .venv/bin/python run.py --mode=predict --model_dir=runs/distill --dataset=folder:my_images
    .venv/bin/python run.py --mode=export --export_format=onnx,litert --model_dir=runs/distill
    .venv/bin/python run.py --flagfile=flags/presets/imagenet_r50_pretrain.cfg --data_dir=...

Flags are parsed and validated first (a bad value exits with status 2 and one line naming
it); only then is TensorFlow asked to build anything. A run that fails later (NaN loss, a
checkpoint that does not fit) exits with status 1 and one line saying why. After `_configure`
nothing here reads a flag: the RunConfig says everything (--mode=predict and --mode=export:
`_configure_use` and the PredictConfig or ExportConfig it builds).
"""
import dataclasses
import os
import sys
from typing import Optional

# TensorFlow's C++ INFO and WARNING lines would bury the progress lines. SIMCLR_TF_LOG=1 or
# --verbosity=1 shows TensorFlow's whole log, start-up notices included (_quiet_libraries).
FULL_TF_LOG_VARIABLE = "SIMCLR_TF_LOG"
_TF_LOG_LEVEL_GIVEN = "TF_CPP_MIN_LOG_LEVEL" in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, logging  # noqa: E402
from absl import flags as absl_flags  # noqa: E402

from flags import checks, commands, configs, definitions, validate  # noqa: E402
from stages import STAGES, preemption  # noqa: E402

FLAGS = definitions.FLAGS

# --help and --helpshort list the main module's key flags: make ours theirs.
absl_flags.adopt_module_key_flags(definitions)


def _fail(message: str, status: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def _full_tf_log() -> bool:
    return os.environ.get(FULL_TF_LOG_VARIABLE) == "1" or FLAGS.verbosity >= 1


def _quiet_libraries():
    """TensorFlow's start-up notices, Python-side TensorFlow and TFDS warnings, TFDS progress
    bars off; SIMCLR_TF_LOG=1 or --verbosity=1 keeps the log (the bars stay off).

    The start-up notices (stages/startup_log.py) look like errors on a healthy CPU-only
    machine; the warnings are about the libraries' own deprecations, not the run. Any other
    line TensorFlow writes while starting, and our warnings, still show.
    """
    import logging as std_logging

    if _full_tf_log():
        if not _TF_LOG_LEVEL_GIVEN:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        import tensorflow_datasets as tfds
        tfds.disable_progress_bar()
        return
    from stages import startup_log
    tf = startup_log.import_quietly()
    import tensorflow_datasets as tfds
    tf.get_logger().setLevel("ERROR")
    tfds.disable_progress_bar()
    logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= std_logging.ERROR
        or f"{os.sep}tensorflow_datasets{os.sep}" not in record.pathname)


@dataclasses.dataclass(frozen=True)
class _Run:
    """What configuring hands to the rest of main.

    Attributes:
      cfg: the final RunConfig.
      strategy: the tf.distribute strategy.
      source: the loaded data.Source.
      chief: whether this worker writes (model_dir, record, SavedModels, the report).
      flag_values: {flag name: value used}, for flags.json and starts.jsonl.
      next_command: the command printed at the end; None after the last stage.
      use_command: after the last stage, the command that predicts with its model.
    """
    cfg: object
    strategy: object
    source: object
    chief: bool
    flag_values: dict
    next_command: Optional[str]
    use_command: Optional[str] = None


def _configure() -> _Run:
    """Validates the flags, picks the strategy, loads the data and builds the final config."""
    validate.validate(FLAGS)
    _quiet_libraries()
    from data import datasets, pipeline
    from tf2 import distribute, precision
    # The strategy first: MultiWorkerMirroredStrategy and TPUs must configure TensorFlow before
    # it runs anything (reading the data would start it).
    strategy = distribute.make_strategy(FLAGS.distribution, FLAGS.tpu or FLAGS.tpu_name,
                                        FLAGS.tpu_zone, FLAGS.gcp_project)
    checks.checkpoint_stem(FLAGS)
    source = checks.named(FLAGS, "dataset", datasets.load)(configs.data_config(FLAGS), strategy)
    checks.train_split(FLAGS, source)
    checks.sources(FLAGS)
    examples = checks.named(FLAGS, "dataset", pipeline.num_train_examples)(
        source, configs.data_config(FLAGS), FLAGS.train_mode)
    eval_split = checks.eval_split(FLAGS, source)
    cfg = configs.run_config(FLAGS, examples, source.class_names, eval_split=eval_split,
                             precision=precision.detect(FLAGS.precision, strategy))
    for warning in checks.check(FLAGS, cfg, source):
        logging.warning(warning)
    warning = validate.jit_warning(FLAGS, precision.device_kind(strategy))
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    validate.check_batch_divides(cfg.train.train_batch_size, strategy.num_replicas_in_sync)
    validate.check_batch_divides(cfg.eval_batch_size, strategy.num_replicas_in_sync,
                                 "eval_batch_size")
    names = [f.name for f in FLAGS.get_key_flags_for_module(definitions)]
    next_command = commands.next_command(FLAGS, cfg.model_dir, source.num_classes > 0,
                                         evaluable=eval_split is not None,
                                         network=configs.network_flags(cfg))
    return _Run(cfg, strategy, source, distribute.is_chief(strategy),
                configs.used_values(FLAGS, names), next_command,
                commands.use_command(FLAGS, cfg.model_dir) if next_command is None else None)


def _setup(cfg):
    """Seeds, determinism and precision."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(cfg.train.seed)  # initialisation; the input has its own seeds
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(cfg.precision)


def _run_record(run: _Run):
    """The chief's RunRecord (config.json, flags.json with the values used, starts.jsonl).

    The training loop writes it once the resume has succeeded, never before: a refused run
    must not overwrite the record of the run whose checkpoints are in model_dir.
    """
    if run.cfg.mode == "eval" or not run.chief:
        return None
    from checkpoints import record
    from tf2 import config as cfg_lib
    return record.RunRecord(run.cfg.model_dir, cfg_lib.run_config_to_dict(run.cfg),
                            run.flag_values, sys.argv)


def _claim_model_dir(cfg, chief):
    """The chief's lock on model_dir (see checkpoints/model_dir.py), debris of dead writers gone.

    Returns the Claim (keep it referenced: the lock lasts as long as the process), or None on
    non-chief workers, which never write into model_dir.
    """
    from checkpoints import model_dir
    if not chief:
        return None
    roles = {"train": [model_dir.TRAIN], "eval": [model_dir.EVAL],
             "train_then_eval": [model_dir.TRAIN, model_dir.EVAL]}[cfg.mode]
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


def _report(run: _Run, result=None, teacher=None):
    """Where the results are (model_dir is in the banner above), the evaluation, what next."""
    from checkpoints import export as export_lib
    cfg = run.cfg
    steps = export_lib.exported_steps(cfg.export_dir)
    exported = os.path.join(cfg.export_dir, str(steps[-1])) if steps else "(none)"
    print(f"\nSavedModel:  {exported}")
    print(f"TensorBoard: {commands.tensorboard_command(cfg.model_dir)}")
    if result:
        print(f"eval:        top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f} "
              f"on {result['num_examples']} examples (step {result['global_step']})")
    if run.next_command is None:
        print(_done(cfg, result, teacher))
        print(f"use:         {run.use_command}", flush=True)
        return
    _print_next(run.next_command, cfg.data.dataset)


def _done(cfg, student, teacher) -> str:
    """The last word after the distilled model's evaluation: the student against its teacher,
    and how to use it (the `use:` command printed next)."""
    lines = ["done:        the three stages are complete: the SavedModel above is the distilled "
             "model (a TF Hub module; README, 'Checkpoints, resuming, SavedModels'); "
             "--eval_split=<split> evaluates it on another split. To use it, the command below "
             "writes its predictions and embeddings of the split just evaluated into "
             "runs/predict (--dataset=folder:PATH for yours; README, 'Step 4')."]
    if student and teacher:
        gap = 100 * (student["top1"] - teacher["top1"])
        lines.append(f"             top-1 on split {student['split']}: student "
                     f"{student['top1']:.4f}, teacher {teacher['top1']:.4f} ({cfg.teacher}, "
                     f"{teacher['how']}).")
        if gap < 0:
            lines.append(f"             The student is WORSE than its teacher by {-gap:.2f} "
                         f"points: the teacher ({cfg.teacher}) is the better model; a "
                         "longer distillation (a larger --train_epochs) may close the gap.")
        else:
            lines.append(f"             The student matches or beats its teacher "
                         f"(+{gap:.2f} points).")
    return "\n".join(lines)


def _print_next(command, dataset):
    """The next stage's command, after a note for each placeholder the user must fill in."""
    for note in commands.notes(command, dataset):
        print(f"note:        {note}")
    print(f"next:        {command}", flush=True)


def _print_banner(run: _Run):
    """Before the long silence of reading the data and tracing: what runs, on what, where.

    Every worker composes it (counting the parameters builds a network), only the chief
    prints it: a multi-worker run whose workers built different things before their first
    collective would pair the wrong collective ops.
    """
    from stages import banner
    text = "\n".join(banner.lines(run.cfg, run.source, run.cfg.mode)) + "\n"
    if run.chief:
        print(text, flush=True)


def _with_command(message: str) -> str:
    """`message` (which says to run the same command again) and that command, as it runs."""
    return preemption.with_command(message)


# What SIGTERM outside the training steps says (stages/preemption.py): nothing is lost.
_STOPPED_STARTING = ("Stopped by SIGTERM during start-up, before any training step: nothing "
                     "was lost (model_dir is as it was). Run the same command again.")
_STOPPED_EVALUATING = ("Stopped by SIGTERM while evaluating: the checkpoints are untouched, "
                       "nothing was lost. Run the same command again to evaluate.")
_STOPPED_REPORTING = ("Stopped by SIGTERM after the work was done: the checkpoints and "
                      "SavedModels are complete, nothing was lost.")
_STOPPED_USING = ("Stopped by SIGTERM before the files were complete: the model is untouched. "
                  "Run the same command again to write them.")


@dataclasses.dataclass(frozen=True)
class _Use:
    """What configuring --mode=predict or --mode=export hands to the rest of main.

    Attributes:
      cfg: the final stages.predict.PredictConfig or stages.export_formats.ExportConfig.
      description: the model --model_dir names (checkpoints.trained.Description).
      strategy, source: the tf.distribute strategy and the loaded data.Source (predict only).
    """
    cfg: object
    description: object
    strategy: object = None
    source: object = None


def _configure_use() -> _Use:
    """--mode=predict / export: validates the flags, reads the model's description, (predict)
    picks the strategy and loads the data, and builds the final config."""
    from flags import predict as predict_flags
    validate.validate(FLAGS)
    predict_flags.check(FLAGS)
    _quiet_libraries()
    if FLAGS.mode == "export":
        return _Use(predict_flags.export_config(FLAGS), predict_flags.describe(FLAGS))
    from data import datasets
    from tf2 import distribute, precision
    strategy = distribute.make_strategy(FLAGS.distribution, FLAGS.tpu or FLAGS.tpu_name,
                                        FLAGS.tpu_zone, FLAGS.gcp_project)
    description = predict_flags.describe(FLAGS)
    source = checks.named(FLAGS, "dataset", datasets.load)(configs.data_config(FLAGS), strategy)
    cfg = predict_flags.predict_config(FLAGS, description, source,
                                       precision.detect(FLAGS.precision, strategy))
    validate.check_batch_divides(cfg.batch_size, strategy.num_replicas_in_sync,
                                 "eval_batch_size")
    return _Use(cfg, description, strategy, source)


def _predict(use: _Use):
    """The model on new images (stages/predict.py): banner, files, summary, how to load."""
    import keras
    from stages import predict
    cfg = use.cfg
    print("\n".join(predict.banner_lines(cfg, use.description, use.source)) + "\n", flush=True)
    keras.mixed_precision.set_global_policy(cfg.precision)
    try:
        with use.strategy.scope():
            trained = predict.build(use.description, cfg.embedding_layer)
    except predict.LayerError as e:
        _fail(str(e))
    try:
        summary = predict.run(cfg, use.strategy, use.source, trained)
    except (FileNotFoundError, ValueError, OSError) as e:
        logging.info("Traceback (shown with --verbosity=0):", exc_info=True)
        _fail(str(e), status=1)
    print("\n" + "\n".join(predict.report_lines(summary)))
    files = summary["files"]
    print("load:        " + commands.load_predictions_command(files["predictions"],
                                                            files["embeddings"]), flush=True)


def _export(use: _Use):
    """The model as files for other runtimes (stages/export_formats.py), and how to open them."""
    import keras
    from checkpoints import formats
    from stages import export_formats, predict
    cfg, size = use.cfg, use.description.image_size
    keras.mixed_precision.set_global_policy("float32")  # the files are float32
    try:
        written = export_formats.run(cfg, use.description)
    except (predict.LayerError, formats.MissingPackageError) as e:
        _fail(str(e))
    for fmt, path in written.items():
        print(f"{fmt + ':':<13}{path} (input images float32 (N, {size}, {size}, 3) in [0, 1], "
              "prepared as README 'Step 4' shows)")
        print(f"{'open:':<13}{commands.load_export_command(path)}")
    print(f"{'classes:':<13}{os.path.join(cfg.output_dir, formats.CLASS_NAMES_FILE)}")
    print(f"{'note:':<13}{formats.NOT_EXPORTED}.", flush=True)


def _use_model():
    """--mode=predict and --mode=export: the model in --model_dir on new images, or as files."""
    try:
        use = _configure_use()
    except (validate.FlagError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    from stages import predict
    (_predict if isinstance(use.cfg, predict.PredictConfig) else _export)(use)


def main(argv):
    preemption.set_command(commands.this_command(sys.argv))
    with preemption.ExitOnSigterm(_STOPPED_STARTING) as sigterm:
        try:
            _main(argv, sigterm)
        except preemption.Stopped as e:  # stages/loop.py saved a checkpoint, says to run again
            raise SystemExit(_with_command(e.code)) from None


def _main(argv, sigterm):
    """main, with `sigterm` (a preemption.ExitOnSigterm) told the phase for its message."""
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}{validate.flagfile_origin(sys.argv, argv[1])}; "
              "every setting is a --flag (see --help).")
    if FLAGS.use_tpu:
        FLAGS.distribution = "tpu"
    if FLAGS.mode in ("predict", "export"):
        sigterm.message = _STOPPED_USING
        return _use_model()
    try:
        run = _configure()
    except (validate.FlagError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    import tensorflow as tf
    from checkpoints import manager as ckpt_lib
    from tf2 import distribute
    from stages import evaluate, loop
    cfg = run.cfg
    claim = _claim_model_dir(cfg, run.chief)  # noqa: F841  held until the process ends
    _print_banner(run)  # before _setup seeds Keras: it builds a network
    _setup(cfg)
    result = teacher = None
    try:
        if cfg.mode in ("train", "train_then_eval"):
            STAGES[cfg.train_mode].module().run(cfg, run.strategy, run.source,
                                                is_chief=run.chief, record=_run_record(run))
        if cfg.mode in ("eval", "train_then_eval"):
            sigterm.message = _STOPPED_EVALUATING
            result = _evaluate(run)
            teacher = _teacher_score(run, result)
        sigterm.message = _STOPPED_REPORTING
    except (loop.NonFiniteLossError, ckpt_lib.UnreadableCheckpointError, ckpt_lib.DiskFullError,
            evaluate.NoCheckpointError, FileNotFoundError, ValueError) as e:
        logging.info("Traceback (shown with --verbosity=0):", exc_info=True)
        _fail(str(e), status=1)
    except distribute.CLUSTER_ERRORS as e:  # a worker died: say so, not a collective traceback
        logging.info("Traceback (shown with --verbosity=0):", exc_info=True)
        _fail(_with_command(distribute.cluster_error_message(e, cfg.model_dir)), status=1)
    except (tf.errors.ResourceExhaustedError, OSError) as e:  # a full disk, or no memory
        problem = ckpt_lib.disk_full_error(e, cfg.model_dir, "into it") or _out_of_memory(e, cfg)
        if problem is None:
            raise
        logging.info("Traceback (shown with --verbosity=0):", exc_info=True)
        _fail(str(problem), status=1)
    if run.chief:
        _report(run, result, teacher)


def _teacher_score(run: _Run, student):
    """distill.teacher_score after a distilled model's evaluation (every worker: it may
    evaluate); None for the other stages, or with a warning when the teacher is gone."""
    if run.cfg.train_mode != "distill" or not run.cfg.teacher:
        return None
    from stages import distill
    try:
        return distill.teacher_score(run.cfg, run.strategy, run.source, student,
                                     show=run.chief)
    except (FileNotFoundError, ValueError) as e:
        logging.warning("Not compared with the teacher %s: %s", run.cfg.teacher, e)
        return None


def _out_of_memory(error, cfg) -> Optional[str]:
    """The message for TensorFlow's out-of-memory error (None for other errors)."""
    import tensorflow as tf
    if not isinstance(error, tf.errors.ResourceExhaustedError):
        return None
    first = (error.message or str(error)).strip().splitlines()[0]
    batches = ([f"--train_batch_size={cfg.train.train_batch_size}"] if cfg.mode != "eval"
               else []) + ([f"--eval_batch_size={cfg.eval_batch_size}"]
                           if cfg.mode != "train" else [])
    return (f"out of memory ({first}) at --image_size={cfg.data.image_size} with "
            f"{' and '.join(batches)}; the checkpoints in {cfg.model_dir} are intact: use a "
            "smaller --image_size or batch size (or a machine with more memory).")


def _evaluate(run: _Run):
    """evaluate.run; mode=eval says first when it has to wait for a checkpoint, and how long."""
    import tensorflow as tf
    from stages import evaluate
    cfg = run.cfg
    watch = cfg.mode == "eval"
    if watch and tf.train.latest_checkpoint(cfg.model_dir) is None:
        print(f"Waiting up to {cfg.eval_timeout} s for a checkpoint in {cfg.model_dir} "
              "(set the wait with --eval_timeout)...", flush=True)
    try:
        return evaluate.run(cfg, run.strategy, run.source, watch=watch, is_chief=run.chief,
                            timeout=cfg.eval_timeout)
    except evaluate.NoCheckpointError as e:
        raise evaluate.NoCheckpointError(
            f"{e} (--eval_timeout={cfg.eval_timeout}): train into this --model_dir first, "
            "or wait longer with a larger --eval_timeout.") from e


def _parse_flags(argv):
    """absl's parser, but an unknown flag or a malformed value exits like any bad flag."""
    try:
        return FLAGS(argv)
    except absl_flags.Error as e:
        _fail(f"{e}{validate.flagfile_origin(argv, str(e))} (see --helpshort)")


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    app.run(main, flags_parser=_parse_flags)
