"""The STAGES registry is the one list of stages: --train_mode, the banner, the printed next
command and run.py all read it."""
import inspect

from flags import commands, definitions
from stages import STAGES


def test_train_mode_offers_exactly_the_registered_stages_in_order():
    assert definitions.FLAGS["train_mode"].parser.enum_values == ["pretrain", "finetune", "distill"]
    assert list(STAGES) == definitions.FLAGS["train_mode"].parser.enum_values


def test_every_stage_module_has_the_shape_of_a_stage():
    for name, stage in STAGES.items():
        module = stage.module()
        assert module.__name__ == f"stages.{name}"
        for part in ("build", "make_step_fn", "run"):
            assert callable(getattr(module, part)), (name, part)
        assert list(inspect.signature(module.run).parameters) == [
            "cfg", "strategy", "source", "is_chief", "record"]


def test_the_next_commands_lead_through_the_stages(run_flags):
    """pretrain -> finetune -> distill -> eval of the distilled model, then nothing."""
    expected = {"pretrain": "--train_mode=finetune --checkpoint=runs/x",
                "finetune": "--train_mode=distill --teacher=runs/x",
                "distill": "--mode=eval --train_mode=distill --model_dir=runs/x"}
    for name, args in expected.items():
        command = commands.next_command(run_flags(f"--train_mode={name}"), "runs/x")
        assert command == f"{commands.program()} {args}"
    assert commands.next_command(run_flags("--train_mode=distill", "--mode=eval"), "r") is None
