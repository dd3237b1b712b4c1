"""CUDA graphs replayed concurrently on their own streams compute what they compute alone.

The trap this guards (pytorch/pytorch#193402): graphs captured on one stream share that
stream's cuBLAS workspace, so two of them replayed at the same time on two streams race on it
and split-K matrix products come out wrong. Packs of ResNet-50s trained with that race
diverged. ``graphed.capture(..., stream=s)`` gives each graph its own capture stream."""

from __future__ import annotations

import pytest
import torch

from perfstudy.engines.graphed import capture

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _graphs(n: int, own_streams: bool):
    """n graphs, each a chain of skinny matrix products with a long inner dimension (the shape
    of ResNet-50's classifier, which cuBLAS splits along K into a workspace)."""
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    jobs = []
    for _ in range(n):
        a = torch.randn(32, 8192, device=dev, generator=gen, dtype=torch.bfloat16)
        ws = [torch.randn(8192, 10, device=dev, generator=gen, dtype=torch.bfloat16)
              for _ in range(16)]
        out = torch.zeros(len(ws), 32, 10, device=dev, dtype=torch.float32)
        stream = torch.cuda.Stream(dev)

        def step(a=a, ws=ws, out=out):
            for i, w in enumerate(ws):
                out[i].copy_(a @ w)

        for _ in range(2):  # warm-up, as before any capture
            step()
        torch.cuda.synchronize()
        graph = capture(step, dev, stream=stream if own_streams else None)
        jobs.append((graph, stream, out))
    return jobs


def _mismatches(jobs, rounds: int) -> int:
    """Replay every graph once alone to get its result, then all together on their streams,
    ``rounds`` times; count rounds where some graph's result differs from its result alone."""
    expected = []
    for graph, stream, out in jobs:
        with torch.cuda.stream(stream):
            graph.replay()
        torch.cuda.synchronize()
        expected.append(out.clone())
    bad = 0
    for _ in range(rounds):
        for graph, stream, _out in jobs:
            with torch.cuda.stream(stream):
                graph.replay()
        torch.cuda.synchronize()
        bad += any(not torch.equal(out, e) for (_, _, out), e in zip(jobs, expected, strict=True))
    return bad


@cuda
def test_concurrent_replays_on_own_capture_streams_match_replays_alone():
    jobs = _graphs(4, own_streams=True)
    assert _mismatches(jobs, rounds=200) == 0
