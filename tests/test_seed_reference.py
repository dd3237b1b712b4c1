"""``reference/seed.yaml`` against the seed document itself: every number of every table.

The document's tables are tab-separated lines; each block of such lines is one table, named by
its header row (and, for Q1(a), by the heading just before it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from perfstudy.report import seed_reference

REPO = Path(__file__).resolve().parents[1]
SEED_DIR = REPO.parent / "shared" / "seed"
YAML = REPO / "src" / "perfstudy" / "report" / "seed.yaml"

MODELS = {"ResNet-18": "resnet18", "ResNet-32": "resnet32", "ResNet-50": "resnet50"}
DATASETS = {"MNIST": "mnist", "FashionMNIST": "fashion-mnist"}


def _num(text: str) -> float | None:
    text = text.strip()
    return None if text in ("–", "-") else float(text.replace(",", ""))


def _tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading before the table, header cells, data rows) for each tab-separated block."""
    out, heading, block = [], "", []
    for line in text.splitlines() + [""]:
        if "\t" in line:
            block.append(line.split("\t"))
            continue
        if block:
            out.append((heading, block[0], block[1:]))
            block = []
        if line.strip():
            heading = line.strip()
    return out


@pytest.fixture(scope="module")
def tables():
    if not SEED_DIR.is_dir():
        pytest.skip(f"{SEED_DIR} absent: the seed document is not beside this checkout")
    docs = sorted(SEED_DIR.glob("*.txt"))
    assert docs, f"no seed document in {SEED_DIR}"
    return _tables(docs[0].read_text())


def test_document_has_the_five_tables(tables):
    headers = [h[:2] for _, h, _ in tables]
    assert headers.count(["Batch Size", "Optimizer"]) == 2
    assert ["Dataset", "Kernel"] in headers and ["Compute", "Batch"] in headers
    assert ["Model", "FLOPs (G)"] in headers
    assert len(tables) == 5


def test_q1a_every_number(tables):
    ref = yaml.safe_load(YAML.read_text())["q1a"]
    seen = set()
    for heading, header, rows in tables:
        if header[0] != "Batch Size":
            continue
        dataset = next(v for k, v in DATASETS.items() if f"Q1(a): {k} " in heading + " ")
        assert header[3:5] == ["ResNet-18 Acc (%)", "ResNet-50 Acc (%)"]
        ours = [[b, o, lr, a, c] for b, o, lr, a, c in ref[dataset]]
        theirs = [[int(b), o.lower(), float(lr), float(a), float(c)]
                  for b, o, lr, a, c, pin in rows]
        assert all(pin == "True" for *_, pin in rows)
        assert ours == theirs, dataset
        seen.add(dataset)
    assert seen == {"mnist", "fashion-mnist"}


def test_q1b_every_number(tables):
    ref = yaml.safe_load(YAML.read_text())["q1b"]
    (rows,) = [r for _, h, r in tables if h[0] == "Dataset"]
    theirs = [[DATASETS[d], k.lower(), float(c), None if _num(g) is None else int(_num(g)),
               float(a), _num(t)] for d, k, c, g, a, t in rows]
    assert ref == theirs
    assert len(ref) == 24


def test_q2_every_number(tables):
    ref = yaml.safe_load(YAML.read_text())["q2"]
    ((header, rows),) = [(h, r) for _, h, r in tables if h[0] == "Compute"]
    models = [MODELS[h.split(" ")[0]] for h in header[4:7]]
    assert header[7:] == [h.replace("Acc (%)", "Time (ms)") for h in header[4:7]]
    theirs = []
    for compute, batch, opt, lr, *nums in rows:
        device = {"CPU": "cpu", "GPU": "cuda"}[compute]
        theirs.append([device, int(batch), opt.lower(), float(lr),
                       dict(zip(models, map(_num, nums[:3]), strict=True)),
                       dict(zip(models, map(_num, nums[3:]), strict=True))])
    assert ref == theirs


def test_flops_every_number(tables):
    ref = yaml.safe_load(YAML.read_text())["flops"]
    (rows,) = [r for _, h, r in tables if h == ["Model", "FLOPs (G)"]]
    assert ref == {MODELS[m]: float(g) for m, g in rows}


def test_lookups_by_config():
    """The keys the report uses: configs as stored (lr 0.001, degree 0 for RBF, device cuda)."""
    ref = seed_reference.load()
    assert ref.q1a_acc({"dataset": "mnist", "model": "resnet50", "batch_size": 16,
                        "optimizer": "adam", "lr": 0.001}) == 99.88
    assert ref.q1a_acc({"dataset": "mnist", "model": "resnet50", "batch_size": 64,
                        "optimizer": "adam", "lr": 0.001}) is None
    assert ref.q1b_row({"dataset": "fashion-mnist", "kernel": "rbf", "C": 10.0,
                        "degree": 0}) == (87.86, 34137.0)
    assert ref.q1b_row({"dataset": "mnist", "kernel": "poly", "C": 0.1,
                        "degree": 4}) == (35.90, 189232.0)
    cfg = {"dataset": "fashion-mnist", "model": "resnet32", "batch_size": 16,
           "optimizer": "adam", "lr": 1e-3}
    assert ref.q2_row(cfg, "cuda") == (18.73, 164316.0)
    assert ref.q2_row({**cfg, "dataset": "mnist"}, "cuda") is None
    assert ref.flops == {"resnet18": 1.751, "resnet32": 3.311, "resnet50": 3.967}
    assert len(ref.q1a) == 32 and len(ref.q1b) == 24 and len(ref.q2_acc) == 12
