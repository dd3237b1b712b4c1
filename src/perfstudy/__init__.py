"""perfstudy: reproducible benchmark studies of ML models (accuracy, training time, FLOPs)."""

__version__ = "0.1.0"
