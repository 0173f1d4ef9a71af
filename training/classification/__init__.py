"""Image classification (``train-classifier``, ``evaluate``, ``export-classifier``,
``quantize``): Fashion-MNIST or an image folder, a small ResNet or VGG-style CNN."""
