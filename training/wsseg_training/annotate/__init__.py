"""``wsseg annotate``: a local browser tool that makes weak labels by hand.

Modules: ``cli`` (the command), ``server`` (HTTP routes), ``session`` (dataset + file + lock + saving),
``state`` (one scene's edits, undo / redo), ``picking`` (a click ray -> the point of the full cloud),
``display`` (the decimated copy and its colours), ``suggest`` (where to click next, from a model),
``interop`` / ``interop_cli`` (SemanticKITTI ``.label`` and Segments.ai import / export).
``web/`` holds the page (three.js from npm, installed by ``make setup``).
"""
