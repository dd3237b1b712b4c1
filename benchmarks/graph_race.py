"""The cuBLAS-workspace race between CUDA graphs replayed concurrently, shown both ways.

    PYTHONPATH=src python benchmarks/graph_race.py [--rounds 200]

Four graphs of skinny bf16 matrix products (ResNet-50's classifier shape, as ``FusedLinear``
computes it) replay together, each on its own stream, ``--rounds`` times; a round is wrong
when some product is off its fp32 reference by more than bf16 rounding allows. Captured on
torch's one default capture stream, the graphs share a cuBLAS workspace and race on it;
captured each on its own stream (``graphed.capture(..., stream=s)``, what packing does), they
do not. Output of 2026-11-29 on one H200: docs/performance.md. Needs CUDA.
tests/test_graphed.py asserts the second on the same workload.
"""

from __future__ import annotations

import argparse

import torch

from perfstudy.dl.engines.graphed import capture


def graphs(n: int, own_streams: bool):
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


def bad_rounds(jobs, rounds: int) -> int:
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=200)
    args = p.parse_args()
    for own in (False, True):
        where = "own capture streams" if own else "one shared capture stream"
        bad = bad_rounds(graphs(4, own_streams=own), rounds=args.rounds)
        print(f"{where}: {bad} of {args.rounds} rounds with wrong products", flush=True)


if __name__ == "__main__":
    main()
