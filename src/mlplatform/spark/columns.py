"""Column references that take a dataset's header as it is.

Spark parses a column name given as text: `a.b` is field `b` of struct `a`, so a header such
as `1st.proline` (which `mlplatform init` accepts from an export) is not found. Every column
named by a spec or a file goes through `col`, which quotes it as Spark's SQL does.
"""

from __future__ import annotations


def quoted(name: str) -> str:
    """`name` as a backquoted identifier (a backquote inside doubled), taken literally."""
    return "`" + name.replace("`", "``") + "`"


def col(name: str):
    """The column called exactly `name`, dots, spaces and backquotes included."""
    from pyspark.sql import functions as F

    return F.col(quoted(name))
