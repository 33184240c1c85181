"""`one_thread` wraps notebook 01's training function, not the class that counts empty batches."""

import torch

from curriclab.core.data import spl_toy_data
from curriclab.core.protocol import SampleMethod
from curriclab.experiments import self_paced_learning
from curriclab.experiments.self_paced_learning import EmptyBatchCounter, train_spl
from curriclab.methods.spl import SPLLoss


def test_empty_batch_counter_is_a_plain_class():
    assert isinstance(EmptyBatchCounter, type) and issubclass(EmptyBatchCounter, SampleMethod)
    counter = EmptyBatchCounter(SPLLoss(4, threshold=1e-6))
    counter.objective(torch.arange(2), torch.ones(2))
    assert isinstance(counter, EmptyBatchCounter) and counter.count == 1  # nothing selected yet


def test_train_spl_trains_on_one_thread_and_restores_the_count(monkeypatch):
    observed = []
    plain_train_epoch = self_paced_learning.train_epoch

    def observing_train_epoch(*args, **kwargs):
        observed.append(torch.get_num_threads())
        return plain_train_epoch(*args, **kwargs)

    monkeypatch.setattr(self_paced_learning, "train_epoch", observing_train_epoch)
    data, _ = spl_toy_data(n_per_class=20, seed=0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        history = train_spl(data, epochs=2, batch_size=16, seed=0)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert len(history) == 2 and observed == [1, 1]
    assert after == 2
