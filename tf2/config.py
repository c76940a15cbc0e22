"""Configuration: frozen dataclasses with the paper's defaults, and tiny() presets for tests.

Library code takes these (or plain numbers); only `flags/` turns command-line flags into them.
Defaults are the SimCLRv2 ImageNet settings (paper Sec. 3.1 and the original tf2 code).
"""
import dataclasses
from typing import Optional

from data.config import DataConfig

BLOCK_GROUPS = 4  # every ResNet here has four block groups


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The encoder (SK-)ResNet.

    Attributes:
      resnet_depth: 18, 34 (basic blocks) or 50, 101, 152, 200 (bottleneck blocks).
      width_multiplier: channel multiplier (paper: 1, 2, 3; fractions give thin networks).
      sk_ratio: selective-kernel reduction ratio; 0 disables SK (paper: 0.0625). When > 0 the
        ResNet-D variant (deep stem, avg-pool shortcuts) is used as well, as the paper says.
      se_ratio: squeeze-excitation ratio; 0 disables it.
      cifar_stem: 3x3/1 stem without max pool (for images of 32 px or less).
      batch_norm_decay: moving-average momentum of batch norm.
      batch_norm_epsilon: batch-norm epsilon (the original code uses 1e-5).
      global_bn: synchronise batch statistics across all replicas.
      frozen_blocks: -1 trains everything; 0 freezes the stem; k in 1..4 freezes the stem and
        block groups 1..k (the original's `fine_tune_after_block`; 4 = linear head only).
    """
    resnet_depth: int = 50
    width_multiplier: float = 1
    sk_ratio: float = 0.0
    se_ratio: float = 0.0
    cifar_stem: bool = False
    batch_norm_decay: float = 0.9
    batch_norm_epsilon: float = 1e-5
    global_bn: bool = True
    frozen_blocks: int = -1

    @classmethod
    def tiny(cls, **overrides) -> "ModelConfig":
        base = dict(resnet_depth=18, width_multiplier=1, cifar_stem=True, global_bn=False)
        base.update(overrides)
        return cls(**base)


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Projection head and supervised head.

    Attributes:
      proj_head_mode: 'none', 'linear' or 'nonlinear'.
      num_proj_layers: layers of the nonlinear head (paper: 3).
      proj_out_dim: width of the last layer (paper: 128).
      ft_proj_selector: which head layer feeds the supervised head: 0 = encoder output
        (SimCLR v1), 1 = after the first layer (SimCLRv2 1%/10%), -1 = the last layer.
      zero_init_logits_layer: start the supervised head at zero.
      num_classes: classes of the supervised head; 0 for none.
    """
    proj_head_mode: str = "nonlinear"
    num_proj_layers: int = 3
    proj_out_dim: int = 128
    ft_proj_selector: int = 0
    zero_init_logits_layer: bool = False
    num_classes: int = 1000

    @classmethod
    def tiny(cls, **overrides) -> "HeadConfig":
        base = dict(proj_out_dim=16, num_classes=10)
        base.update(overrides)
        return cls(**base)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Contrastive and distillation objectives.

    Attributes:
      temperature: NT-Xent temperature tau (paper: 0.1).
      hidden_norm: L2-normalise projections before the dot product (cosine similarity).
      distill_temperature: tau of Eq. 2 (paper: 0.1 self-distillation, 1.0 big-to-small).
      distill_alpha: weight of the distillation term of Eq. 3; 1.0 is Eq. 2 (no labels).
    """
    temperature: float = 0.1
    hidden_norm: bool = True
    distill_temperature: float = 1.0
    distill_alpha: float = 1.0


@dataclasses.dataclass(frozen=True)
class MemoryConfig:
    """MoCo-style memory of negatives filled by an EMA copy of encoder + head.

    Attributes:
      size: number of queued negatives K (paper: 65,536); 0 switches the memory off.
      ema_decay: decay of the exponential moving average of the weights (paper: 0.999).
    """
    size: int = 0
    ema_decay: float = 0.999

    @property
    def enabled(self) -> bool:
        return self.size > 0


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer and its learning-rate schedule.

    Attributes:
      optimizer: 'lars', 'momentum' or 'adam'.
      learning_rate: base rate before scaling (paper pretraining: 0.1 with sqrt scaling).
      learning_rate_scaling: 'linear' (lr * B / 256) or 'sqrt' (lr * sqrt(B)).
      warmup_epochs: linear warm-up length in epochs (paper pretraining: 5% of 800 = 40).
      weight_decay: decay applied inside LARS (or as L2 loss for the other optimizers).
      momentum: momentum of LARS and SGD.
      trust_coefficient: LARS eta.
    """
    optimizer: str = "lars"
    learning_rate: float = 0.1
    learning_rate_scaling: str = "sqrt"
    warmup_epochs: float = 10.0
    weight_decay: float = 1e-4
    momentum: float = 0.9
    trust_coefficient: float = 0.001


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Length and batch of one training stage.

    Attributes:
      train_batch_size: global batch over all replicas.
      train_epochs: epochs over `num_train_examples`.
      train_steps: if set, overrides train_epochs.
      num_train_examples: examples per epoch, from the data set's info.
      steps_per_loop: optimizer steps inside one tf.function call.
      seed: seed of initialisation, shuffling and augmentation.
    """
    train_batch_size: int = 4096
    train_epochs: float = 100.0
    train_steps: Optional[int] = None
    num_train_examples: int = 1_281_167
    steps_per_loop: int = 100
    seed: int = 0

    @property
    def total_steps(self) -> int:
        if self.train_steps is not None:
            return int(self.train_steps)
        return int(round(self.train_epochs * self.num_train_examples / self.train_batch_size))

    def epochs_to_steps(self, epochs: float) -> int:
        return int(round(epochs * self.num_train_examples / self.train_batch_size))


@dataclasses.dataclass(frozen=True)
class KnnConfig:
    """The online kNN monitor (stages/monitor.py), off by default: big data sets pay nothing.

    Attributes:
      every_steps: evaluate every this many steps (and at the first and last); 0 = off.
      k: neighbours per query.
      temperature: vote weight exp(similarity / temperature) (InstDisc, solo-learn: 0.07);
        0 = plain majority vote.
      bank_size: labelled training images in the bank (class-balanced draw from the
        labelled ones); 0 = all of them.
      eval_examples: held-out images (holdout split if any, else eval split) scored, the
        first ones in index order; 0 = all.
    """
    every_steps: int = 0
    k: int = 20
    temperature: float = 0.07
    bank_size: int = 0
    eval_examples: int = 0

    @property
    def enabled(self) -> bool:
        return self.every_steps > 0


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything one run needs: the parts above plus where things go; final once built.

    Attributes:
      model, head, loss, memory, optimizer, train: see the classes above.
      data: a `data.config.DataConfig` (None where no data are read).
      train_mode: the stage, a name of `stages.STAGES` ('pretrain', 'finetune', 'distill').
      mode: 'train', 'eval' (watch model_dir and evaluate its checkpoints) or
        'train_then_eval'.
      model_dir: checkpoints, SavedModels (model_dir/saved_model/<step>), TensorBoard logs.
      checkpoint: warm start (checkpoint prefix, model_dir or SavedModel); required to
        fine-tune.
      teacher: distillation teacher (checkpoint prefix, model_dir or SavedModel).
      keep_checkpoint_max, keep_hub_module_max: how many checkpoints / SavedModels to keep.
      checkpoint_every_steps: save period in steps (rounded up to steps_per_loop).
      lineareval_while_pretraining: linear head on stop-gradient features in pretraining.
      eval_batch_size, eval_steps: evaluation batch; 0 steps = the whole split.
      precision: 'float32', 'mixed_bfloat16' or 'mixed_float16' ('auto' until run.py
        resolves it for the hardware, see tf2/precision.py).
      precision_reason: why that precision was chosen (banner, config.json).
      jit_compile: XLA-compile the replica step.
      progress_bar: live bar (None = when stdout is a terminal).
      class_names: the training data's class names, label k = class_names[k] (empty when
        unlabelled or unknown); config.json and the SavedModels record them so that a later
        evaluation, resume or distillation can check that its data mean the same classes.
      knn: the online kNN monitor.
      eval_timeout: mode=eval, seconds to wait for the next checkpoint (0 = do not wait).
      deterministic: deterministic TensorFlow ops (slower).

    `mode`, `eval_timeout` and `deterministic` say how this process runs, not what the run
    trains: config.json (`run_config_to_dict`) leaves them out.
    """
    model: ModelConfig = ModelConfig()
    head: HeadConfig = HeadConfig()
    loss: LossConfig = LossConfig()
    memory: MemoryConfig = MemoryConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    data: Optional[DataConfig] = DataConfig()
    train_mode: str = "pretrain"
    model_dir: str = "runs/pretrain"
    checkpoint: Optional[str] = None
    teacher: Optional[str] = None
    keep_checkpoint_max: int = 5
    keep_hub_module_max: int = 1
    checkpoint_every_steps: int = 0
    lineareval_while_pretraining: bool = True
    eval_batch_size: int = 256
    eval_steps: int = 0
    precision: str = "float32"
    precision_reason: str = ""
    jit_compile: bool = False
    progress_bar: Optional[bool] = None
    class_names: tuple = ()
    knn: KnnConfig = KnnConfig()
    mode: str = "train"
    eval_timeout: int = 600
    deterministic: bool = False

    @classmethod
    def tiny(cls, **overrides) -> "RunConfig":
        """A network and run small enough for a test (tiny parts, 4 steps of batch 8)."""
        base = dict(model=ModelConfig.tiny(), head=HeadConfig.tiny(), data=DataConfig.tiny(),
                    train=TrainConfig(train_batch_size=8, train_steps=4, steps_per_loop=1),
                    eval_batch_size=8)
        base.update(overrides)
        return cls(**base)

    @property
    def export_dir(self) -> str:
        return f"{self.model_dir}/saved_model"

    def hparams(self) -> dict:
        """Flat {name: value} of scalar settings, for TensorBoard's hparams plugin."""
        flat = {"train_mode": self.train_mode, "precision": self.precision}
        for part in ("model", "head", "loss", "memory", "optimizer", "train", "data", "knn"):
            for key, value in dataclasses.asdict(getattr(self, part)).items():
                if isinstance(value, (bool, int, float, str)):
                    flat[f"{part}.{key}"] = value
        return flat


# How this process runs, not what the run trains: never in config.json.
_PROCESS_FIELDS = ("mode", "eval_timeout", "deterministic")
_PARTS = {"model": ModelConfig, "head": HeadConfig, "loss": LossConfig, "memory": MemoryConfig,
          "optimizer": OptimizerConfig, "train": TrainConfig}


def run_config_to_dict(cfg: RunConfig) -> dict:
    """A JSON-able dict of `cfg` (data included), written as model_dir/config.json."""
    out = dataclasses.asdict(cfg)
    for name in _PROCESS_FIELDS:
        del out[name]
    out["data"] = dataclasses.asdict(cfg.data) if dataclasses.is_dataclass(cfg.data) else {}
    return out


def load_run_config(path: str, data) -> RunConfig:
    """Reads a config.json written by `run_config_to_dict`; `data` replaces its data part."""
    import json
    with open(path) as f:
        raw = json.load(f)
    parts = {name: cls(**raw.pop(name)) for name, cls in _PARTS.items()}
    parts["knn"] = KnnConfig(**raw.pop("knn", {}))  # absent from configs written before it
    raw.pop("data", None)
    raw["class_names"] = tuple(raw.get("class_names", ()))  # JSON lists; absent before 2026-12
    return RunConfig(**parts, data=data, **raw)
