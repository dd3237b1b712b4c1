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
    """n graphs, each a chain of skinny batched matrix products with a long inner dimension, as
    ``FusedLinear`` computes ResNet-50's 2048-wide classifier (``baddbmm``; cuBLAS may split
    such products along K into its workspace).

    Returns (graph, stream, output, fp32 reference, inputs) per graph."""
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    jobs = []
    for _ in range(n):
        a = torch.randn(1, 32, 8192, device=dev, generator=gen, dtype=torch.bfloat16)
        bias = torch.randn(1, 1, 10, device=dev, generator=gen, dtype=torch.bfloat16)
        ws = [
            torch.randn(1, 8192, 10, device=dev, generator=gen, dtype=torch.bfloat16)
            for _ in range(16)
        ]
        out = torch.zeros(len(ws), 32, 10, device=dev, dtype=torch.float32)
        ref = torch.stack([(bias.float() + a.float() @ w.float())[0] for w in ws])
        stream = torch.cuda.Stream(dev)

        def step(a=a, bias=bias, ws=ws, out=out):
            for i, w in enumerate(ws):
                out[i].copy_(torch.baddbmm(bias, a, w)[0])

        for _ in range(2):  # warm-up, as before any capture
            step()
        torch.cuda.synchronize()
        graph = capture(step, dev, stream=stream if own_streams else None)
        # the graph reads a, bias and ws by address: they must live as long as the graph
        jobs.append((graph, stream, out, ref, (a, bias, ws)))
    return jobs


def _bad_rounds(jobs, rounds: int) -> int:
    """Replay all graphs together, each on its stream, ``rounds`` times; count rounds in which
    some graph's products are off their fp32 reference by more than bf16 rounding allows
    (split-K sums may differ bit for bit from replay to replay; a race is off by the result's
    own size)."""
    bad = 0
    for _ in range(rounds):
        for graph, stream, *_ in jobs:
            with torch.cuda.stream(stream):
                graph.replay()
        torch.cuda.synchronize()
        bad += any(
            (out - ref).abs().max() > 0.02 * ref.abs().max() for _g, _s, out, ref, _k in jobs
        )
    return bad


@cuda
def test_concurrent_replays_on_own_capture_streams_compute_their_own_products():
    jobs = _graphs(4, own_streams=True)
    assert _bad_rounds(jobs, rounds=200) == 0
