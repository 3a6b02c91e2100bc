"""The first stage: where a log lives and how it is read.

``tk.Schema`` (also ``tk.data.Schema``) names the roles of a log's columns once; the
splits, ``tk.evaluate``, the baselines, ``tk.HistoryBuilder`` and ``tk.Recipe`` read it
from the data that carries it. ``tk.data.Shards`` names event shards on disk (Parquet,
CSV, TFRecord) once; every stage reads them chunk by chunk. :data:`TableLike` is what
every entry point accepts as a log: a DataFrame, a dict of arrays, a
``tf.data.Dataset`` or files.

Private modules, in the order data flows through them:

- ``_schema``: :class:`Schema`, the column roles, and the one rule that finds them;
- ``_source``: the rules that resolve paths, globs and folders into shards;
- ``_shards``: :class:`Shards`, a log on disk named once;
- ``_files``: Parquet, CSV and TFRecord shards read into columns, chunk by chunk;
- ``_table``: any accepted input as one in-memory table of NumPy columns;
- ``_tensors``: in-memory tables to ``tf.data`` batches (TensorFlow);
- ``_stream``: shards streamed into training batches without holding the log (TensorFlow).
"""

from tfrs_kit.data._schema import Schema
from tfrs_kit.data._shards import Shards
from tfrs_kit.data._source import TableLike

__all__ = ["Schema", "Shards", "TableLike"]
