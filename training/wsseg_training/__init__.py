"""wsseg offline side: datasets, synthetic scenes, weak labels, the torch backbone, methods and training."""

__version__ = "0.1.0"
