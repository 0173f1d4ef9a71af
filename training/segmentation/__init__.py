"""Semantic segmentation (``train-segmenter``, ``evaluate-segmenter``): a semantic FPN on the
detector's backbone, label-PNG sets."""
