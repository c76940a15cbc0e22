"""Command line: an official SimCLRv2 TF2 SavedModel becomes a checkpoint of ours.

    python -m checkpoints.convert gs-copy/r50_1x_sk1/saved_model runs/r50_1x_sk1 \
        --resnet_depth=50 --width_multiplier=1 --sk_ratio=0.0625

Reading the official layout: checkpoints/official.py; copying its weights:
checkpoints/official_weights.py.
"""
import argparse
import json
import os
import sys
from typing import Optional, Sequence

from checkpoints import official, official_weights
from tf2 import config as config_lib


def convert(src: str, dst: str, ft_proj_selector: int = 0,
            **expected) -> official_weights.ImportReport:
    """Imports an official SavedModel and writes it as one of our checkpoints.

    Writes `dst/ckpt-0` (a `tf.train.Checkpoint(model=...)` as warm starts read it, found by
    `tf.train.latest_checkpoint(dst)`), `dst/config.json` (a RunConfig record whose model and
    head parts describe the architecture, the rest being defaults) and `dst/import_report.json`.

    Args:
      src: official SavedModel directory.
      dst: output directory.
      ft_proj_selector, **expected: as for `official_weights.import_official`.
    """
    from checkpoints import manager as ckpt_lib

    model, report = official_weights.import_official(src, ft_proj_selector, **expected)
    ckpt_lib.CheckpointManager(dst, max_to_keep=1, model=model).save(0)
    model_cfg, head_cfg = official.configs_for(report.architecture, ft_proj_selector)
    run_cfg = config_lib.RunConfig(model=model_cfg, head=head_cfg, data=None, model_dir=dst,
                                   checkpoint=src)
    ckpt_lib.write_json_atomic(os.path.join(dst, "config.json"),
                               config_lib.run_config_to_dict(run_cfg))
    ckpt_lib.write_json_atomic(os.path.join(dst, "import_report.json"),
                               {"source": src, **report.to_json()})
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m checkpoints.convert",
        description="Convert an official SimCLRv2 TF2 SavedModel into a checkpoint of ours.")
    parser.add_argument("src", help="official SavedModel directory")
    parser.add_argument("dst", help="output directory (ckpt-0, config.json, import_report.json)")
    for flag, kind in (("resnet_depth", int), ("width_multiplier", int), ("sk_ratio", float),
                       ("num_proj_layers", int), ("proj_out_dim", int), ("num_classes", int)):
        parser.add_argument(f"--{flag}", type=kind, default=None,
                            help="checked against the SavedModel (optional)")
    parser.add_argument("--ft_proj_selector", type=int, default=0,
                        help="recorded in config.json: 0 = official exports, 1 = paper 1%%/10%%")
    args = vars(parser.parse_args(argv))
    src, dst, selector = args.pop("src"), args.pop("dst"), args.pop("ft_proj_selector")
    try:
        report = convert(src, dst, ft_proj_selector=selector, **args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.architecture))
    print(f"copied {len(report.pairs)} variables into {dst}/ckpt-0")
    for note in report.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
