"""Run one config of any kind: the single dispatch from a config to its trainer."""

from __future__ import annotations

from perfstudy import provenance
from perfstudy.results import RunResult


def count_flops(cfg, data_dir=None, progress=None) -> RunResult:
    from perfstudy import flops

    shape = flops.parse_input(cfg.input) if cfg.input else None
    info = flops.count(cfg.model, cfg.variant, shape)
    return RunResult(kind="flops", config=cfg.to_dict(), extra=info.to_dict(),
                     provenance=provenance.collect())


def execute(cfg, data_dir=None, progress=None, **dl_options) -> RunResult:
    """``dl_options`` (``checkpoint``, ``checkpoint_every_s``) go to ``train_dl``; SVM fits and
    FLOPs counts take none."""
    if cfg.kind == "dl":
        from perfstudy.train import train_dl

        return train_dl(cfg, data_dir=data_dir, progress=progress, **dl_options)
    run = count_flops
    if cfg.kind == "svm":
        from perfstudy.svm import fit_svm as run
    return run(cfg, data_dir=data_dir, progress=progress)
