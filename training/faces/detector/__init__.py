"""The MTCNN face detector: its networks (``model``), the packaged cascade measured as the
service runs it (``eval``), its export (``export``) and command (``args``)."""

NAME = "faces-detector"  # the package's name (model_store/faces-detector)
