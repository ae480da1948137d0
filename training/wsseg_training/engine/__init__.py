"""The training engine: config, data (crops, augmentation, batching), the loop, checkpoints, DDP.

Entry point: :func:`wsseg_training.engine.loop.train` (``wsseg train``).  Submodules are
imported directly (``from wsseg_training.engine.loop import train``); this package
imports nothing so that method modules can use its pieces without import cycles.
"""
