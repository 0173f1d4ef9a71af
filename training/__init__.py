"""Training, evaluation and export of the models the service serves (the ``train`` extra).

Shaped like torchvision ``references/``: one folder per task with the same file names,
``args`` (its commands, no torch), ``data`` (get_dataset), ``model``, ``train``
(train_one_epoch, evaluate, main), ``eval`` (the exported model scored as the service runs
it) and ``export`` (ONNX + parity check + package): ``classification``, ``detection``,
``instances``, ``segmentation``, ``faces`` (the embedder; ``faces.detector``: MTCNN). ``common``
holds the one training loop (``common.run.Run``: checkpoints, ``--resume``), shared layers,
export and packaging helpers; ``synth`` the data generators; ``cli`` the subcommands.

    python -m training.cli train-classifier --help

Serving never imports this package.
"""
