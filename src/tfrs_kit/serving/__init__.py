"""Serving an exported index over HTTP: micro-batching, hot swap of versions, metrics.

:func:`app` returns a FastAPI (ASGI) app for an index directory written by
:meth:`~tfrs_kit.Index.save`, or for a versioned model folder that it watches for new
versions; ``tfrs-kit serve DIR`` runs it with uvicorn. Endpoints:

* ``POST /v1/recommend``: ``{"user_id": "42", "k": 10, "exclude": ["7"]}`` to
  ``{"ids": [...], "scores": [...], "version": 3}`` (``"version": n`` asks any version
  in ``DIR/versions``);
* ``POST /v1/models/<name>:predict``: TF Serving's REST shape, ``{"instances": [...]}``
  to ``{"predictions": [{"ids": [...], "scores": [...]}, ...]}`` (top ``k_max``);
* ``GET /healthz`` (the process is up), ``GET /readyz`` (a version is loaded and
  warmed up), ``GET /metrics`` (Prometheus);
* ``GET /``: a page to try queries by hand and compare two versions side by side;
  ``GET /v1/versions``: the versions present and the query features.

Needs the ``serve`` extra: ``pip install "tfrs-kit[serve]"``. ``import tfrs_kit``
never imports it. The guide is *Serving over HTTP* in ``docs/serving.md``.

Example:
    >>> from tfrs_kit import serving
    >>> api = serving.app("exports/movies", max_batch_size=64, max_wait_ms=2)  # doctest: +SKIP
"""

from tfrs_kit.serving._app import app
from tfrs_kit.serving._versions import latest_version, version_path, write_latest

__all__ = ["app", "latest_version", "version_path", "write_latest"]
