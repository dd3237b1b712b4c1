"""SVMs: one ``SVMConfig`` in, one ``RunResult`` out (``fit.fit_svm``), by one of the backends
``config.SVM_BACKENDS`` names (``backends``): libsvm, oneDAL, or perfstudy's own exact C-SVC in
PyTorch (``torchsvc``), batched over the one-vs-one pairs on a GPU."""
