"""The ALA tests' toy study (runner and plot tests)."""

from curriclab.experiments.harness import DataSpec, ModelSpec, Study, TrainSpec

TOY_STUDY = Study("toy ALA", DataSpec("blobs", train_size=180, validation_size=60, test_size=60),
                  ModelSpec("mlp", (8,)),
                  TrainSpec(optimizer="adam", lr=0.01, batch_size=30, epochs=3), seeds=(0,),
                  track=("validation", "test"))
"""Two 2-D blobs, an MLP 2-8-2 with Adam: 6 steps per epoch, 18 in all (arms set per test)."""
