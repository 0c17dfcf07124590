"""The scale-out path: the funnel and retention analyses run unchanged on Spark (PySpark in local
mode, through Ibis's pyspark backend) over the hand-made events of ``test_funnel`` and
``test_retention`` (and a property filter over a price sent as text), with the same results as on
DuckDB.

Spark runs the Ibis expression itself (``to_pyarrow``); ``engine.records`` sends compiled SQL through
a DB-API cursor, which a Spark session does not have. Slow: the session takes ~12 s to start and
each query a few seconds (~40 s in all); needs Java 17 (``java`` on the PATH)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import ibis
import pyarrow as pa
import pytest

from huiyuan.analytics import engine
from huiyuan.analytics import funnel as fn
from huiyuan.analytics import retention as rt
from tests.analytics import test_funnel, test_retention
from tests.analytics.events_data import at, table, with_json

pytestmark = pytest.mark.slow

pyspark_sql = pytest.importorskip("pyspark.sql")
if shutil.which("java") is None:  # pragma: no cover - the test machines have Java 17
    pytest.skip("Spark needs Java (java on the PATH)", allow_module_level=True)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local Spark session tuned to start fast and shuffle little: two cores, two shuffle
    partitions, no UI, no code generation, an in-memory catalog (no Derby metastore), UTC as the
    session time zone (the warehouse's ``ts`` is naive UTC), this interpreter for Python workers,
    bound to the loopback interface."""
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    # Should an expression fall back to one of Ibis's pandas UDFs, Python workers need this
    # interpreter's packages (PySpark reads the variable when the context starts).
    patch = pytest.MonkeyPatch()
    patch.setenv("PYSPARK_PYTHON", sys.executable)
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("huiyuan-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        # A few rows: interpreting beats compiling (whole-stage code generation, the JIT's C2).
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.catalogImplementation", "in-memory")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield ibis.pyspark.connect(session)
    finally:
        session.stop()
        patch.undo()


def _events(spark: Any, rows: list[Any], name: str) -> tuple[Any, Any]:
    """The same ``fact_events`` rows on DuckDB and as a Spark temporary view."""
    arrow = table(rows)
    duck = ibis.duckdb.connect()
    duck.create_table("fact_events", arrow)
    # Spark reads pandas; int32 ``date_key`` stays an int (Spark's ``int``) through the schema.
    session = spark._session
    frame = session.createDataFrame(arrow.to_pandas(), schema=_spark_schema(arrow.schema))
    frame.createOrReplaceTempView(name)
    return with_json(duck.table("fact_events")), with_json(spark.table(name))


def _spark_schema(schema: pa.Schema) -> Any:
    types = pyspark_sql.types
    by_arrow = {
        pa.int64(): types.LongType(),
        pa.int32(): types.IntegerType(),
        pa.string(): types.StringType(),
        pa.timestamp("us"): types.TimestampNTZType(),
    }
    return types.StructType([types.StructField(f.name, by_arrow[f.type], True) for f in schema])


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Values both engines render alike: floats to 6 places, dates and times as ISO dates."""
    out = []
    for row in rows:
        clean: dict[str, Any] = {}
        for k, v in row.items():
            if isinstance(v, float):
                v = round(v, 6)
            elif isinstance(v, datetime | date):
                v = v.isoformat()[:10]
            clean[k] = v
        out.append(clean)
    return out


def _same(duck_expr: Any, spark_expr: Any) -> list[dict[str, Any]]:
    expected = _plain(engine.records(duck_expr))
    got = _plain(spark_expr.to_pyarrow().to_pylist())
    assert got == expected
    return got


@pytest.fixture(scope="module")
def funnel_events(spark: Any) -> tuple[Any, Any]:
    return _events(spark, test_funnel.ROWS, "funnel_events")


@pytest.fixture(scope="module")
def retention_events(spark: Any) -> tuple[Any, Any]:
    return _events(spark, test_retention.ROWS, "retention_events")


def test_funnel_on_spark(funnel_events: tuple[Any, Any]) -> None:
    duck, spark = funnel_events
    hour = fn.FunnelRequest(
        start=date(2026, 6, 1), end=date(2026, 6, 1), steps=test_funnel.STEPS, window_seconds=3600
    )
    # Sequential, one hour, by the first step's channel (as in test_funnel).
    by_channel = hour.model_copy(update={"breakdown": "channel"})
    rows = _same(fn.funnel(duck, 1, by_channel), fn.funnel(spark, 1, by_channel))
    assert {r["breakdown"]: (r["step_1"], r["step_2"], r["step_3"]) for r in rows} == {
        "seo": (4, 3, 1),
        "ads": (2, 2, 1),
    }
    assert {r["breakdown"]: r["median_s_2"] for r in rows} == {"seo": 600.0, "ads": 600.0}
    # Strict, entering on SEO only: p2 (B too late), p4 (C comes next), p5 (Cancel comes after B)
    # and p6's second A (then B).
    seo = [{"event": "A", "filters": [{"property": "channel", "op": "eq", "value": "seo"}]}]
    strict = fn.FunnelRequest.model_validate(
        {**hour.model_dump(), "mode": "strict", "steps": seo + test_funnel.STEPS[1:]}
    )
    [row] = _same(fn.funnel(duck, 1, strict), fn.funnel(spark, 1, strict))
    assert (row["step_1"], row["step_2"], row["step_3"]) == (4, 2, 0)


def test_retention_on_spark(retention_events: tuple[Any, Any]) -> None:
    duck, spark = retention_events
    days = rt.RetentionRequest.model_validate(
        {
            "start": "2026-06-01",
            "end": "2026-06-06",
            "as_of": "2026-06-07",
            "start_event": {"event": "S"},
            "return_event": {"event": "R"},
            "periods": 3,
            "interval": (2, 3),
        }
    )
    rows = _same(rt.retention(duck, 1, days), rt.retention(spark, 1, days))
    assert {r["cohort"]: (r["size"], r["n1"], r["n2"], r["n3"], r["between"]) for r in rows} == {
        "2026-06-01": (3, 1, 1, 2, 3),
        "2026-06-02": (1, 1, 0, 0, 0),
        "2026-06-06": (1, 0, 0, 0, 0),
    }
    weeks = days.model_copy(
        update={"unit": "week", "end": date(2026, 6, 7), "as_of": date(2026, 6, 14), "periods": 2}
    )
    weeks = weeks.model_copy(update={"interval": None, "measure": "on_or_after", "breakdown": "plan"})
    rows = _same(rt.retention(duck, 1, weeks), rt.retention(spark, 1, weeks))
    assert {(r["cohort"], r["value"]): (r["size"], r["n1"]) for r in rows} == {
        ("2026-06-01", "gold"): (2, 0),
        ("2026-06-01", "silver"): (4, 1),
    }


def test_numeric_filter_on_spark(spark: Any) -> None:
    # A price sent as text (an old app version does) is no number: it neither matches nor fails.
    rows = [
        ("n1", "A", at(0), {"price": 150}),
        ("n1", "B", at(5), {}),
        ("n2", "A", at(0), {"price": 50.5}),
        ("n2", "B", at(5), {}),
        ("n3", "A", at(0), {"price": "¥150"}),
        ("n3", "B", at(5), {}),
        ("n4", "A", at(0), {"price": 120}),
    ]
    duck, on_spark = _events(spark, rows, "priced_events")
    steps = [{"event": "A", "filters": [{"property": "price", "op": "gt", "value": 100}]}, {"event": "B"}]
    request = fn.FunnelRequest(start=date(2026, 6, 1), end=date(2026, 6, 1), steps=steps)
    [row] = _same(fn.funnel(duck, 1, request), fn.funnel(on_spark, 1, request))
    assert (row["step_1"], row["step_2"]) == (2, 1)  # n1 and n4 enter; n1 goes on
