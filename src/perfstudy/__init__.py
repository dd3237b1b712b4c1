"""perfstudy: reproducible benchmark studies of ML models (accuracy, training time, FLOPs).

From Python (``perfstudy.api`` has each call's documentation)::

    import perfstudy
    study = perfstudy.load_study("studies/quick.yaml")
    perfstudy.run(study, db="quick.db")
    df = perfstudy.read_results("quick.db")
    perfstudy.write_report("quick.db", out="report")

The calls are imported on first use, so ``import perfstudy`` stays light.
"""

__version__ = "0.1.0"

__all__ = ["count_flops", "fit_svm", "list_datasets", "list_models", "load_study",
           "read_results", "register_dataset", "register_model", "run", "train",
           "write_report"]


def __getattr__(name: str):
    if name in __all__:
        from perfstudy import api

        return getattr(api, name)
    raise AttributeError(f"module 'perfstudy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
