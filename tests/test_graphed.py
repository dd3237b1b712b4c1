"""CUDA graphs replayed concurrently on their own streams compute what they compute alone.

The trap this guards (pytorch/pytorch#193402): graphs captured on one stream share that
stream's cuBLAS workspace, so two of them replayed at the same time on two streams race on it
and split-K matrix products come out wrong. Packs of ResNet-50s trained with that race
diverged. ``graphed.capture(..., stream=s)`` gives each graph its own capture stream."""

from __future__ import annotations

import pytest

from graph_race import bad_rounds, graphs  # benchmarks/: the benchmark's own workload


@pytest.mark.cuda
def test_concurrent_replays_on_own_capture_streams_compute_their_own_products():
    jobs = graphs(4, own_streams=True)
    assert bad_rounds(jobs, rounds=200) == 0
