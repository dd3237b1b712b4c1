"""Study files: grid expansion, exclusions, repeats, overrides, filters and clear errors."""

from pathlib import Path

import pytest

from perfstudy.errors import UsageError
from perfstudy.study import spec as studies

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(text)
    return p


GRID = """
name: t
experiments:
  a:
    kind: dl
    epochs: 2
    fixed: {model: resnet32}
    grid:
      dataset: [mnist, fashion-mnist]
      optimizer: [sgd, adam]
      lr: [1e-3, 1.0e-4]
    exclude:
      - {dataset: mnist, lr: 1.0e-4}
    repeats: 2
  s:
    kind: svm
    grid: {kernel: [rbf, poly], degree: [2, 3], C: [1, 10]}
"""


def test_grid_expansion_exclude_repeats(tmp_path):
    s = studies.load(write(tmp_path, GRID))
    runs = s.runs()
    dl = [r for r in runs if r.experiment == "a"]
    # 2 datasets x 2 optimizers x 2 lrs = 8, minus the 2 mnist/1e-4 points = 6, x 2 seeds
    assert len(dl) == 12
    assert {r.config.seed for r in dl} == {0, 1}
    assert all(r.config.epochs == 2 and r.config.model == "resnet32" for r in dl)
    assert not [r for r in dl if r.config.dataset == "mnist" and r.config.lr == 1e-4]
    svm = [r for r in runs if r.experiment == "s"]
    # rbf ignores degree: 2 C values; poly: 2 degrees x 2 C values
    assert len(svm) == 2 + 4
    assert len({r.key for r in runs}) == len(runs) == 18


def test_overrides_only_and_filters(tmp_path):
    path = write(tmp_path, GRID)
    s = studies.load(path, overrides={"epochs": 1, "lr": 0.01}, only=["a"])
    runs = s.runs()
    assert [e.name for e in s.experiments] == ["a"]
    assert {r.config.lr for r in runs} == {0.01}  # the override replaces the grid axis
    assert {r.config.epochs for r in runs} == {1}
    # exclusion no longer matches (lr is 0.01 everywhere): 2 x 2 x 2 seeds
    assert len(runs) == 8
    kept = studies.filter_runs(runs, {"dataset": "mnist", "optimizer": "adam"})
    assert len(kept) == 2 and all(r.config.dataset == "mnist" for r in kept)
    assert studies.parse_assignments(["lr=1e-3", "pin_memory=false", "model=resnet18"], "-o") \
        == {"lr": "1e-3", "pin_memory": False, "model": "resnet18"}


def test_filter_matches_a_setting_left_at_its_default():
    # weights was added after runs were stored: its default is left out of the key's dict,
    # but --filter weights=none must still find those runs
    s = studies.load(REPO / "studies" / "seed_explanations.yaml")
    runs = s.runs()
    assert len(runs) == 8
    kept = studies.filter_runs(runs, {"weights": "none"})
    assert len(kept) == 4 and {r.config.weights for r in kept} == {"none"}
    assert {r.config.variant for r in kept} == {"native", "imagenet"}
    assert {r.key for r in kept}.isdisjoint(r.key for r in studies.filter_runs(
        runs, {"weights": "imagenet"}))


def test_seed_study_has_exactly_the_seed_runs():
    s = studies.load(REPO / "studies" / "seed.yaml")
    runs = s.runs()
    by = {}
    for r in runs:
        by.setdefault(r.experiment, []).append(r.config)
    q1a = by["q1a"]
    assert len(q1a) == 32  # 2 datasets x 2 models x 2 batch x 2 optimizers x 2 lr
    assert {(c.batch_size, c.optimizer, c.lr) for c in q1a} == {
        (b, o, lr) for b in (16, 32) for o in ("sgd", "adam") for lr in (1e-3, 1e-4)}
    assert all(c.epochs == 10 and c.pin_memory for c in q1a)
    q1b = by["q1b"]
    assert len(q1b) == 24  # per dataset: rbf x 3 C + poly x 3 C x 3 degrees
    assert sorted({(c.kernel, c.C, c.degree) for c in q1b})[:3] == [
        ("poly", 0.1, 2), ("poly", 0.1, 3), ("poly", 0.1, 4)]
    q2 = by["q2"]
    assert len(q2) == 12 and {c.device for c in q2} == {"cpu", "cuda"}
    assert {c.model for c in q2} == {"resnet18", "resnet32", "resnet50"}
    assert all(c.dataset == "fashion-mnist" and c.batch_size == 16 for c in q2)
    assert len(by["flops"]) == 6
    assert len(runs) == 90


def test_quick_study_is_small():
    runs = studies.load(REPO / "studies" / "quick.yaml").runs()
    dl = [r.config for r in runs if r.config.kind == "dl"]
    assert all(c.epochs == 1 and c.train_subset and c.train_subset <= 1200 for c in dl)


BAD = [
    ("experiments: [1, 2]", "expected a mapping with an 'experiments:' mapping"),
    ("experiments:\n  a: {kind: gan}", "experiments.a.kind: must be one of dl, svm, flops"),
    ("experiments:\n  a: {kind: dl, grid: {optimiser: [sgd]}}",
     "experiments.a.grid: unknown key 'optimiser' for kind dl"),
    ("experiments:\n  a: {kind: dl, grid: {optimizer: [sgd, adamw]}}",
     "experiments.a.grid.optimizer: bad value 'adamw'"),
    ("experiments:\n  a: {kind: dl, grid: {lr: [0.1, -1]}}",
     "experiments.a.grid.lr: bad value -1: learning rate must be > 0"),
    ("experiments:\n  a: {kind: dl, fixed: {batch_size: 0}}",
     "experiments.a.fixed.batch_size: bad value 0"),
    ("experiments:\n  a: {kind: svm, grid: {kernel: [rbf, sigmoid2]}}",
     "experiments.a.grid.kernel: bad value 'sigmoid2'"),
    ("experiments:\n  a: {kind: dl, repeats: 0}", "experiments.a.repeats: expected a count"),
    ("experiments:\n  a: {kind: dl, grid: {lr: []}}", "experiments.a.grid.lr: empty list"),
    ("experiments:\n  a: {kind: dl, epochz: 3}", "experiments.a: unknown key 'epochz'"),
    ("experiments:\n  a: {kind: dl, exclude: {lr: 1}}", "experiments.a.exclude: expected a list"),
    ("experiments:\n  a: {kind: dl\n", "not valid YAML (line"),
    ("name: x\nexperimentz: {}", "expected a mapping with an 'experiments:' mapping"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_study_files_give_clear_errors(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as err:
        studies.load(path)
    assert str(path) in str(err.value)  # names the file
    assert message in str(err.value)


def test_bad_overrides_and_only(tmp_path):
    path = write(tmp_path, GRID)
    with pytest.raises(UsageError, match="no experiment of .* has a setting 'epochz'"):
        studies.load(path, overrides={"epochz": 1})
    with pytest.raises(UsageError, match="bad value 0"):
        studies.load(path, overrides={"batch_size": 0})
    with pytest.raises(UsageError, match="no experiment 'zz'; the study has: a, s"):
        studies.load(path, only=["zz"])
    with pytest.raises(UsageError, match="no such study file"):
        studies.load(tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="expects key=value"):
        studies.parse_assignments(["lr"], "-o")


def test_pack_settings(tmp_path):
    from perfstudy.study.schedule import units

    text = GRID.replace("    repeats: 2\n", "    repeats: 2\n    pack: auto\n")
    s = studies.load(write(tmp_path, text))
    runs = s.runs()
    assert {r.pack for r in runs if r.experiment == "a"} == {"auto"}
    assert {r.pack for r in runs if r.experiment == "s"} == {None}
    assert [studies.parse_pack(v, "x") for v in ("auto", True, "off", False, 1, 4, "8")] == [
        "auto", "auto", None, None, None, 4, 8]
    with pytest.raises(UsageError, match="x: expected auto, off or a pack size"):
        studies.parse_pack("lots", "x")
    assert units(runs, "auto", free_bytes=None) == [[r] for r in runs]  # no GPU: all alone


def test_repeats_override_gives_every_seeded_experiment_n_seeds():
    plain = studies.load(REPO / "studies/seed.yaml", only=["q1a", "flops"]).runs()
    three = studies.load(REPO / "studies/seed.yaml", only=["q1a", "flops"],
                         overrides={"repeats": 3}).runs()
    q1a = [r for r in three if r.experiment == "q1a"]
    assert len(q1a) == 3 * 32 and sorted({r.config.seed for r in q1a}) == [0, 1, 2]
    assert len([r for r in three if r.experiment == "flops"]) == 6  # FLOPs take no seed
    # seed 0 is the run of the study without repeats: its stored result is reused
    assert {r.key for r in plain if r.experiment == "q1a"} == {
        r.key for r in q1a if r.config.seed == 0}
    with pytest.raises(UsageError, match="-o repeats=0: expected a count >= 1"):
        studies.load(REPO / "studies/seed.yaml", only=["q1a"], overrides={"repeats": 0})
    with pytest.raises(UsageError, match="no experiment of .* has runs whose result depends "
                       "on a seed"):
        studies.load(REPO / "studies/seed.yaml", only=["flops"], overrides={"repeats": 2})


def test_repeats_override_leaves_deterministic_svm_fits_alone_and_refuses_conflicts():
    runs = studies.load(REPO / "studies/seed.yaml", only=["q1b", "q2"],
                        overrides={"repeats": 2}).runs()
    assert len([r for r in runs if r.experiment == "q1b"]) == 24  # one fit per setting
    assert len([r for r in runs if r.experiment == "q2"]) == 2 * 12
    with pytest.raises(UsageError, match="no experiment of .* has runs whose result depends "
                       r"on a seed \(SVM fits"):
        studies.load(REPO / "studies/seed.yaml", only=["q1b"], overrides={"repeats": 2})
    with pytest.raises(UsageError, match="-o seed and -o repeats both set the seeds"):
        studies.load(REPO / "studies/seed.yaml", only=["q2"],
                     overrides={"seed": 5, "repeats": 2})
    with pytest.raises(UsageError, match="-o repeats=None: expected a count"):
        studies.load(REPO / "studies/seed.yaml", only=["q2"], overrides={"repeats": None})
    with pytest.raises(UsageError, match="-o repeats=10001: at most 10,000 seeds"):
        studies.load(REPO / "studies/seed.yaml", only=["q2"], overrides={"repeats": 10_001})
    with pytest.raises(UsageError, match="at most 10,000 seeds, got 99999999999999999999"):
        studies.load(REPO / "studies/seed.yaml", only=["q2"],
                     overrides={"repeats": 99999999999999999999})
    listed = studies.load(REPO / "studies/seed.yaml", only=["q2"],
                          overrides={"repeats": [5, 6]}).runs()
    assert sorted({r.config.seed for r in listed}) == [5, 6]
