"""The ``tfrs-kit`` command: the end-to-end job from a log to recommendations.

``tfrs-kit demo`` runs on a registered data set; ``train``, ``evaluate`` and
``recommend`` work on files; ``update``, ``versions`` and ``rollback`` keep a saved
model's versions; ``serve`` answers HTTP requests; ``datasets`` and ``towers`` list what
is registered (the built-ins and installed plugins). Run ``tfrs-kit COMMAND --help`` for
the options.

Modules, one per group of commands: ``_demo`` (demo, datasets, towers), ``_files``
(train and evaluate on files), ``_saved`` (recommend, versions, rollback, update on a
saved folder), ``_options`` (the argument types and options they share) and ``_main``
(the parser and the exit statuses).
"""

from tfrs_kit.cli._main import main

__all__ = ["main"]
