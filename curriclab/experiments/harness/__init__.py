"""The experiment harness every study of the series uses: spec -> run -> result record -> tables.

    from curriclab.experiments.harness import Arm, DataSpec, Study, TrainSpec, run, paired_table

    study = Study("demo", DataSpec(train_size=5000, validation_size=1000), train=TrainSpec(lr=0.05),
                  arms=(Arm("uniform"), Arm("SGD-S", "sgds", {"unbiased": True})), seeds=(0, 1, 2))
    results = run(study)
    paired_table(results, "test_accuracy", scale=100)

- `spec`: the declarative study (`Study`, `DataSpec`, `ModelSpec`, `TrainSpec`, `Arm`);
- `splits`: the named splits a `DataSpec` describes (train / validation / holdout / test);
- `arms`: the registry of arm methods (`arm_method`) and what an arm plugs in (`ArmSetup`);
- `runner`: `run` and `run_arm` (seeded per arm and seed, evaluated every k steps), `tune`;
- `distributed`: what `run_arm` does under a process group (DDP, sharded epochs, `Synchronized`);
- `results`: `Results` (save / load JSON) and the comparisons (`paired_table`, targets, costs).
"""

from curriclab.experiments.harness.arms import ARM_METHODS, ArmContext, ArmSetup, arm_method
from curriclab.experiments.harness.results import (
    Results,
    cost_to_target,
    paired_costs,
    paired_table,
    validation_target,
)
from curriclab.experiments.harness.runner import build_model, build_optimizer, run, run_arm, tune
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.experiments.harness.splits import Splits, load_splits

__all__ = [
    "ARM_METHODS", "Arm", "ArmContext", "ArmSetup", "DataSpec", "ModelSpec", "Results", "Splits",
    "Study", "TrainSpec", "arm_method", "build_model", "build_optimizer", "cost_to_target",
    "load_splits", "paired_costs", "paired_table", "run", "run_arm", "tune", "validation_target",
]
