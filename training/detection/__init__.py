"""Object detection (``train-detector``, ``export-detector``, ``evaluate-detector``): a small
FCOS-style single-stage detector on letterboxed COCO sets."""
