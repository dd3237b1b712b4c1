"""Deep learning: models (``models``), optimizers, FLOPs counts (``flops``), the engines that
train an epoch (``engines``), the one epoch loop (``loop``) and its two trainees: one run
(``train.train_dl``) and a pack of runs trained together on a GPU (``packing.train_pack``)."""
