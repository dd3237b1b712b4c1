"""An exact C-SVC (libsvm's problem and solution) in PyTorch, batched over one-vs-one pairs."""

from perfstudy.svm.torchsvc.estimator import TorchSVC

__all__ = ["TorchSVC"]
