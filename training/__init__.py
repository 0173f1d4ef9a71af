"""Training, evaluation and export of the models the service serves (the ``train`` extra).

Shaped like torchvision ``references/``: ``data`` (get_dataset), ``transforms`` (batched
augmentation), ``models``, ``engine`` (train_one_epoch, evaluate, fit), ``export`` (ONNX +
parity check + INT8), ``evaluate`` (metrics of the exported model), ``package``
(model_store/<name>/), ``classification`` (main) and ``cli`` (subcommands).

    python -m training.cli train-classifier --help

Serving never imports this package.
"""
