"""Serving: top-k indexes over candidate embeddings, their export and reloading.

Modules, each importing only those listed before it:

- ``_backends``: the search engines (exact brute force, ScaNN) and their options;
- ``_serving``: the ``tf.Module`` that is saved: query tower, candidates, searcher
  and the serving functions;
- ``_inputs``: query features and exclusions converted to the serving functions'
  tensors, with errors naming the user's argument;
- ``_warmup``: TF Serving's warm-up requests, written into the SavedModel;
- ``_export``: the directory layout and metadata, written with an atomic swap;
- ``_explain``: :class:`Explanation`, why an item was recommended (the history
  items behind it, each score component's share), and its faithfulness measure;
- ``_index``: :class:`Index` (recommend, similar items, refresh, save) and
  :class:`Recommendations`;
- ``_cascade``: the cascade's serving module (retrieve, re-rank with a ranker) and its
  build-time checks;
- ``_builder``: :class:`IndexBuilder`: embeds candidates and assembles an index;
- ``_load``: :func:`load_index`: reads and checks a directory, rebuilds the index.

>>> from tfrs_kit.index import IndexBuilder
>>> IndexBuilder(k_max=10)
IndexBuilder(backend='auto', k_max=10, batch_size=8192, backend_options={})
"""

from tfrs_kit.index._builder import IndexBuilder
from tfrs_kit.index._explain import Explanation
from tfrs_kit.index._index import Index, Recommendations
from tfrs_kit.index._load import load_index

__all__ = ["Explanation", "Index", "IndexBuilder", "Recommendations", "load_index"]
