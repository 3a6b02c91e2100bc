"""Serving: top-k indexes over candidate embeddings, their export and reloading.

Modules:

- ``_backends``: the searchers (exact brute force, ScaNN);
- ``_index``: :class:`Index`, :class:`IndexBuilder`, the SavedModel export
  and :func:`load_index`.

>>> from tfrs_kit.index import IndexBuilder
>>> IndexBuilder(k_max=10)
IndexBuilder(backend='auto', k_max=10, batch_size=8192, backend_options={})
"""

from tfrs_kit.index._index import Index, IndexBuilder, Recommendations, load_index

__all__ = ["Index", "IndexBuilder", "Recommendations", "load_index"]
