"""Instance segmentation (``train-instances``, ``evaluate-instances``): the detector with a
YOLACT-style mask branch, trained through the detector's trainer."""
