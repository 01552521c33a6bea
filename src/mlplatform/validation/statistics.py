"""TFDV statistics computed in memory from an Arrow table (no Beam pipeline on the hot path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from tensorflow_metadata.proto.v0 import statistics_pb2

# TFDV reads columns as lists (one row may hold several values); a null becomes a null list,
# which TFDV counts as missing, so presence checks see real null rates.


def _as_lists(col: pa.ChunkedArray) -> pa.ListArray:
    arr = col.combine_chunks()
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(arr) + 1, dtype=np.int32)
    np.cumsum(valid, out=offsets[1:])
    mask = np.concatenate([~valid, [False]])
    return pa.ListArray.from_arrays(pa.array(offsets, mask=mask), arr.drop_null())


def to_record_batch(table: pa.Table) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [_as_lists(c) for c in table.columns], names=table.column_names
    )


def compute_statistics(table: pa.Table) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Full TFDV statistics (counts, nulls, quantiles, top values) of a table."""
    import tensorflow_data_validation as tfdv  # lazily: importing it costs ~15 s
    from tensorflow_data_validation.statistics import stats_impl

    return stats_impl.generate_statistics_in_memory(to_record_batch(table), tfdv.StatsOptions())


def write_statistics(stats: statistics_pb2.DatasetFeatureStatisticsList, path: Path) -> None:
    path.write_bytes(stats.SerializeToString())


def read_statistics(path: Path) -> statistics_pb2.DatasetFeatureStatisticsList:
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString(path.read_bytes())
    return stats
