"""The first stage: where a log lives and how it is read.

``tk.data.Shards`` names event shards on disk (Parquet, CSV, TFRecord) once; every
stage reads them chunk by chunk. :data:`TableLike` is what every entry point accepts
as a log: a DataFrame, a dict of arrays, a ``tf.data.Dataset`` or files.

Private modules, in the order data flows through them:

- ``_source``: :class:`Shards` and the rules that resolve paths, globs and folders;
- ``_files``: Parquet, CSV and TFRecord shards read into columns, chunk by chunk;
- ``_table``: any accepted input as one in-memory table of NumPy columns;
- ``_tensors``: in-memory tables to ``tf.data`` batches (TensorFlow);
- ``_stream``: shards streamed into training batches without holding the log (TensorFlow).
"""

from tfrs_kit.data._source import Shards, TableLike

__all__ = ["Shards", "TableLike"]
