"""RunConfig: defaults, tiny(), and config.json that records the trained run only."""
import dataclasses
import json

from data.config import DataConfig
from tf2 import config as cfg_lib

# config.json's keys as the program wrote them before RunConfig said how the process runs.
RECORD_KEYS = [
    "model", "head", "loss", "memory", "optimizer", "train", "data", "train_mode", "model_dir",
    "checkpoint", "teacher", "keep_checkpoint_max", "keep_hub_module_max",
    "checkpoint_every_steps", "lineareval_while_pretraining", "eval_batch_size", "eval_steps",
    "precision", "precision_reason", "jit_compile", "progress_bar", "class_names", "knn"]


def test_config_json_leaves_out_how_the_process_runs(tmp_path):
    cfg = cfg_lib.RunConfig.tiny(mode="eval", eval_timeout=7, deterministic=True,
                                 class_names=("a", "b"))
    record = cfg_lib.run_config_to_dict(cfg)
    assert list(record) == RECORD_KEYS
    path = tmp_path / "config.json"
    path.write_text(json.dumps(record))
    loaded = cfg_lib.load_run_config(str(path), data=cfg.data)
    # Everything the record holds comes back; the process fields take their defaults.
    assert loaded == dataclasses.replace(cfg, mode="train", eval_timeout=600,
                                         deterministic=False)


def test_defaults_are_the_papers_and_tiny_is_small():
    cfg = cfg_lib.RunConfig()
    assert (cfg.model, cfg.head, cfg.optimizer) == (
        cfg_lib.ModelConfig(), cfg_lib.HeadConfig(), cfg_lib.OptimizerConfig())
    assert cfg.data == DataConfig() and (cfg.mode, cfg.eval_timeout) == ("train", 600)
    tiny = cfg_lib.RunConfig.tiny(train_mode="finetune")
    assert tiny.model == cfg_lib.ModelConfig.tiny() and tiny.head.num_classes == 10
    assert (tiny.train.total_steps, tiny.train.train_batch_size, tiny.train_mode) == (
        4, 8, "finetune")
