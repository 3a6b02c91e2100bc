"""``tk.Recipe``: the whole path from a log to a trained model, settings chosen from the data.

Modules, in the order ``Recipe.fit`` runs them:

- ``_inputs``: the log's columns, one row of attributes per item and user, the
  validation slice carved from the training log;
- ``_settings``: :class:`Settings`, the search space and the settings tried first;
- ``_towers``: the towers every model is built with (a registered name, a ``Tower``
  subclass or a function) and the settings they can take;
- ``_training``: one model from one setting, stopped on a validation ranking metric;
- ``_search`` and ``_trials``: the Optuna search within its budget (trials, or
  seconds), each finished trial kept in the work directory for a resumed fit;
- ``_blend``: the chosen towers beside an iALS factorisation, weighed on the slice;
- ``_rerank``: the ranking stage, kept when it lifts the validation metric;
- ``_fit_memory``: those steps in order on a log read into memory;
- ``_scale``, ``_scale_blend`` and ``_fit_progress``: the same steps out of core on
  files bigger than ``in_memory_rows`` (prepared shards, search on a sample, final
  training streamed, the blend counted shard by shard);
- ``_report``: :class:`RecipeReport` and :class:`Blend`, what was chosen and why;
- ``_recipe``: :class:`Recipe`;
- ``_serve``: ``Recipe.recommend``, by user id or by a history of item ids;
- ``_explain`` and ``_faithfulness``: why each item was recommended (the history
  items whose removal lowers its score most, each component's share) and how often
  that holds;
- ``_store``, ``_save`` and ``_load``: the versioned folder ``Recipe.save`` writes
  and :func:`~tfrs_kit.load` reads, :func:`versions` and :func:`rollback`;
- ``_update``, ``_update_blend`` and ``_publish``: ``Recipe.update`` and
  :func:`update`, new events folded into a fitted model behind a guard.
"""

from tfrs_kit.recipe._load import load
from tfrs_kit.recipe._publish import update
from tfrs_kit.recipe._recipe import Recipe
from tfrs_kit.recipe._report import Blend, RecipeReport, Trial
from tfrs_kit.recipe._settings import Settings
from tfrs_kit.recipe._store import Version, rollback, versions
from tfrs_kit.recipe._update import UpdateRejected, UpdateReport

__all__ = ["Blend", "Recipe", "RecipeReport", "Settings", "Trial", "UpdateRejected",
           "UpdateReport", "Version", "load", "rollback", "update", "versions"]
