"""The training program: one module per stage, the loop they share, and the STAGES registry.

`STAGES` is the one list of stages: run.py runs `STAGES[train_mode].module().run(...)`, the
banner prints its `summary`, flags/definitions offers its names as --train_mode and
flags/commands prints `next_args` as the next command. Importing this package imports no
TensorFlow (flag parsing reads it before anything is built); `module()` loads the stage.

Adding a stage: docs/layout.md, "Adding a stage". `predict` and `export_formats` are not
stages of STAGES: they use a trained model (--mode=predict, --mode=export) and train nothing.
"""
import dataclasses
import importlib
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of the program.

    Attributes:
      name: the --train_mode value and the module `stages/<name>.py`, which has the shape
        `build(cfg, num_classes) -> (model, optimizer)`, `make_step_fn(...)` and
        `run(cfg, strategy, source, is_chief, record) -> model_dir`.
      summary: what the banner says the stage is.
      next_args: the arguments of the command printed after it ({model_dir} is this run's);
        None when nothing follows.
    """
    name: str
    summary: str
    next_args: Optional[str]

    def module(self):
        return importlib.import_module(f"stages.{self.name}")


STAGES = {stage.name: stage for stage in (
    Stage("pretrain", "stage 1/3, contrastive pretraining without labels",
          "--train_mode=finetune --checkpoint={model_dir}"),
    Stage("finetune", "stage 2/3, fine-tuning on labels",
          "--train_mode=distill --teacher={model_dir}"),
    Stage("distill", "stage 3/3, distillation from the teacher's soft labels",
          "--mode=eval --train_mode=distill --model_dir={model_dir}"),
)}
