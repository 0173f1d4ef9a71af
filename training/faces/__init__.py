"""Faces: the face embedder (``train-face-embedder``, ``evaluate-face-embedder``,
``data-landmarks``) and, in ``detector``, the MTCNN face detector (``export-face-detector``)."""
