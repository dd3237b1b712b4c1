"""Best-validation selection: the test split is read once per weights tested."""

import torch

from perfstudy.dl.evaluate import BestEpoch, accuracy


def _model_and_split():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    x = torch.randint(0, 256, (2500, 1, 28, 28), dtype=torch.uint8)
    y = torch.randint(0, 10, (2500,))
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    return model, x, y, calls


def test_a_best_last_epoch_is_tested_once():
    model, x, y, calls = _model_and_split()
    best = BestEpoch()
    best.update(model, 50.0, 1)
    with torch.no_grad():
        model[1].weight.add_(0.01)
    best.update(model, 60.0, 2)  # the last epoch is the best: its weights are the model's
    acc = accuracy(model, x, y, 0.5, 0.25)
    calls.clear()
    assert best.test(model, x, y, 0.5, 0.25, last_epoch=2) == (acc, acc)
    assert calls == [1000, 1000, 500]  # one pass over the 2,500 test images


def test_an_earlier_best_epoch_is_tested_with_its_own_weights():
    model, x, y, calls = _model_and_split()
    best = BestEpoch()
    best.update(model, 60.0, 1)
    first = accuracy(model, x, y, 0.5, 0.25)
    with torch.no_grad():
        model[1].weight.mul_(-1.0)
    best.update(model, 50.0, 2)  # worse: epoch 1 stays the best
    last = accuracy(model, x, y, 0.5, 0.25)
    assert first != last
    calls.clear()
    assert best.test(model, x, y, 0.5, 0.25, last_epoch=2) == (first, last)
    assert calls == [1000, 1000, 500] * 2  # the last weights, then epoch 1's
    assert accuracy(model, x, y, 0.5, 0.25) == first  # the model keeps the best weights
