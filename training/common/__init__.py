"""What every trainer shares: the one training loop (``run``: ``Run``, with ``optim``, ``log``,
``checkpoint``, ``device``; ``resume``: ``--resume``), command-line plumbing (``args``), layers
(``layers``), letterbox and augmentation of letterboxed sets (``letterbox``, ``jitter``,
``splits``), ONNX export and parity (``export``), packaging (``package``), COCO IO and scoring
(``coco``, ``coco_eval``) and evaluation through a running server (``http_eval``)."""
