"""Reading raw files: nothing is lost, malformed lines keep their text."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from recspark.config import Config, ConfigError, SourceConfig, load_config
from recspark.etl.clean import with_duplicates, with_reason
from recspark.etl.ingest import run_ingest
from recspark.etl.stream import run_ingest_stream
from recspark.io.delta import read_table
from recspark.io.sources import PRESETS, SourceError, read_raw_events, resolve_source
from recspark.vocab import SourceFormat, SourcePreset, choices

from .conftest import CONF_DIR


def test_csv_malformed_lines_are_kept_with_their_text(spark: SparkSession, tmp_path: Path) -> None:
    lines = [
        "user_id,item_id,event_type,value,event_ts",
        "u1,i1,view,,2026-01-01 10:00:00",
        "u2,i2,click",
        "u3,i3,view,1,2,3,4",
        '"u4,i4,view,,2026-01-01 10:00:00',
    ]
    (tmp_path / "events.csv").write_text("\n".join(lines) + "\n")
    source = SourceConfig(format="csv", header=True)
    df = read_raw_events(spark, source, str(tmp_path))
    rows = {r["raw_record"]: r for r in df.collect()}
    assert len(rows) == 4
    assert rows[None]["user_id"] == "u1" and rows[None]["event_ts"] == "2026-01-01 10:00:00"
    assert {"u2,i2,click", "u3,i3,view,1,2,3,4"} <= set(rows)
    assert rows["u2,i2,click"]["source_file"].endswith("events.csv")


def test_parquet_source_is_read_as_text(spark: SparkSession, tmp_path: Path) -> None:
    spark.createDataFrame(
        [("u1", "i1", "rating", 4.0, "2026-01-01 10:00:00")],
        "user_id string, item_id string, event_type string, value double, event_ts string",
    ).write.parquet(str(tmp_path / "p"))
    row = read_raw_events(spark, SourceConfig(format="parquet"), str(tmp_path / "p")).first()
    assert (row["value"], row["raw_record"]) == ("4.0", None)


def _raw(df):  # the mapped columns, without the file name
    return df.select("user_id", "item_id", "event_type", "value", "event_ts", "raw_record")


def assert_raw_rows(spark: SparkSession, got: DataFrame, expected: list[tuple]) -> None:
    """`got`'s mapped columns hold exactly the `expected` rows (RAW_DDL), in any order."""
    assert_df_equality(
        _raw(got),
        spark.createDataFrame(expected, RAW_DDL),
        ignore_row_order=True,
        ignore_nullable=True,
    )


RAW_DDL = (
    "user_id string, item_id string, event_type string, value string, event_ts string, "
    "raw_record string"
)


@pytest.mark.parametrize(
    "preset, file_name, text, expected",
    [
        (
            "movielens_udata",
            "u.data",
            "196\t242\t3\t881250949\n186\t302\t3.5\n",
            [
                ("196", "242", "rating", "3", "881250949", None),
                ("186", "302", "rating", "3.5", None, "186\t302\t3.5"),
            ],
        ),
        (
            "movielens_dat",
            "ratings.dat",
            "1::1193::5::978300760\n2::661::3::978302109\n",
            [
                ("1", "1193", "rating", "5", "978300760", None),
                ("2", "661", "rating", "3", "978302109", None),
            ],
        ),
        (
            "movielens_csv",
            "ratings.csv",
            "userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n1,3,4.0,964981247\r\n",
            [
                ("1", "1", "rating", "4.0", "964982703", None),
                ("1", "3", "rating", "4.0", "964981247", None),
            ],
        ),
        (
            "amazon_ratings",
            "mags.csv",
            "B00005N7P0,AH2IFH762VY5U,5.0,1005177600\n",
            [("AH2IFH762VY5U", "B00005N7P0", "rating", "5.0", "1005177600", None)],
        ),
        (
            "lastfm_user_artists",
            "user_artists.dat",
            "userID\tartistID\tweight\n2\t51\t13883\n",
            [("2", "51", "play", "13883", "2026-01-01 00:00:00", None)],
        ),
        (
            # one line per user, items oldest first: 2000-01-01 00:00 UTC, then an hour apart
            "s3rec_sequences",
            "Beauty.txt",
            "1 5 9 5\n2 7\n",
            [
                ("1", "5", "purchase", None, "946684800", None),
                ("1", "9", "purchase", None, "946688400", None),
                ("1", "5", "purchase", None, "946692000", None),
                ("2", "7", "purchase", None, "946684800", None),
            ],
        ),
    ],
)
def test_presets_read_public_layouts(
    spark: SparkSession,
    tmp_path: Path,
    preset: str,
    file_name: str,
    text: str,
    expected: list[tuple],
) -> None:
    (tmp_path / file_name).write_text(text)
    got = read_raw_events(
        spark, SourceConfig(preset=preset), str(tmp_path / file_name), dt.date(2026, 1, 1)
    )
    assert_raw_rows(spark, got, expected)


def test_sequence_lines_without_items_keep_their_text(spark: SparkSession, tmp_path: Path) -> None:
    # an empty line, a user without items, a tab-indented line with extra blanks
    (tmp_path / "seqs.txt").write_text("u1 i1 i2\n\nu2\n\tu3   i3 \n")
    got = read_raw_events(spark, SourceConfig(preset="s3rec_sequences"), str(tmp_path))
    expected = [
        ("u1", "i1", "purchase", None, "946684800", None),
        ("u1", "i2", "purchase", None, "946688400", None),
        (None, None, "purchase", None, None, ""),
        ("u2", None, "purchase", None, None, "u2"),
        ("u3", "i3", "purchase", None, "946684800", None),
    ]
    assert_raw_rows(spark, got, expected)
    assert {r["source_file"].rsplit("/", 1)[-1] for r in got.collect()} == {"seqs.txt"}
    reasons = got.transform(
        with_reason,
        event_weights={"purchase": 5.0},
        timestamp_format="epoch_seconds",
        rating_min=0.5,
        rating_max=5.0,
    )
    assert sorted(
        (r["user_id"] or "", r["item_id"] or "", r["reason"] or "") for r in reasons.collect()
    ) == [
        ("", "", "malformed_record"),
        ("u1", "i1", ""),
        ("u1", "i2", ""),
        ("u2", "", "malformed_record"),
        ("u3", "i3", ""),
    ]


SEQUENCE_FILE = "1 5 9 5\n2 7 8\n3\n\n"  # 5 events, then a user without items, an empty line


def _sequence_config(tmp_path: Path) -> Config:
    """A Config reading SEQUENCE_FILE at `raw/seqs.txt` (and a `landing` folder for streams)."""
    return load_config(
        CONF_DIR,
        "test",
        [
            f"paths.root={tmp_path}",
            "source.preset=s3rec_sequences",
            "source.path=seqs.txt",
            "source.item_catalog=null",
            "ingest.near_duplicate_window_s=2",
        ],
    )


def _items_in_time_order(interactions_df: DataFrame) -> dict[str, list[tuple[str, float]]]:
    """user -> [(item, seconds after the user's previous event; 0 for the first)]."""
    rows = sorted((r["user_id"], r["event_ts"], r["item_id"]) for r in interactions_df.collect())
    out: dict[str, list[tuple[str, float]]] = {}
    for i, (user, ts, item) in enumerate(rows):
        gap = (ts - rows[i - 1][1]).total_seconds() if user in out else 0.0
        out.setdefault(user, []).append((item, gap))
    return out


EXPECTED_SEQUENCES = {
    "1": [("5", 0.0), ("9", 3600.0), ("5", 3600.0)],
    "2": [("7", 0.0), ("8", 3600.0)],
}


def test_sequence_lines_batch_ingest_quarantines_bad_lines(
    spark: SparkSession, tmp_path: Path
) -> None:
    config = _sequence_config(tmp_path)
    Path(config.raw_path).mkdir(parents=True)
    Path(config.raw_file("seqs.txt")).write_text(SEQUENCE_FILE)
    result = run_ingest(spark, config, dt.date(2026, 1, 1))
    assert (result.rows_in, result.clean, result.quarantined) == (7, 5, 2)
    assert result.by_reason == {"malformed_record": 2}
    interactions = read_table(spark, config.table_path("interactions"))
    assert _items_in_time_order(interactions) == EXPECTED_SEQUENCES
    quarantine = read_table(spark, config.table_path("interactions_quarantine"))
    assert sorted((r["raw_record"], r["reason"]) for r in quarantine.collect()) == [
        ("", "malformed_record"),
        ("3", "malformed_record"),
    ]


@pytest.mark.integration
def test_sequence_lines_stream_ingest(spark: SparkSession, tmp_path: Path) -> None:
    config = _sequence_config(tmp_path)
    landing = Path(config.path(config.stream.landing))
    landing.mkdir(parents=True)
    (landing / "seqs.txt").write_text(SEQUENCE_FILE)
    result = run_ingest_stream(spark, config, dt.date(2026, 1, 1))
    assert (result.rows_in, result.clean, result.quarantined) == (7, 5, 2)
    assert result.by_reason == {"malformed_record": 2}
    interactions = read_table(spark, config.table_path("interactions"))
    assert _items_in_time_order(interactions) == EXPECTED_SEQUENCES


def test_json_lines_with_mapping_and_constant(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text(
        '{"uid": "u1", "sku": 7, "ts": "2026-01-01 10:00:00", "v": 4.5}\n'
        "{not json\n"
        '{"uid": "u2", "sku": "i9", "ts": "2026-01-02 10:00:00"}\n'
    )
    source = SourceConfig(
        format="json",
        columns=["uid", "sku", "ts", "v"],
        mapping={"user_id": "uid", "item_id": "sku", "event_ts": "ts", "value": "v"},
        constants={"event_type": "purchase"},
    )
    got = read_raw_events(spark, source, str(tmp_path))
    expected = [
        ("u1", "7", "purchase", "4.5", "2026-01-01 10:00:00", None),
        (None, None, "purchase", None, None, "{not json"),
        ("u2", "i9", "purchase", None, "2026-01-02 10:00:00", None),
    ]
    assert_raw_rows(spark, got, expected)


def test_delta_source_and_missing_column(spark: SparkSession, tmp_path: Path) -> None:
    spark.createDataFrame(
        [("u1", "i1", "click", "2026-01-01 00:00:00")],
        "u string, item_id string, event_type string, event_ts string",
    ).write.format("delta").save(str(tmp_path / "d"))
    good = read_raw_events(
        spark, SourceConfig(format="delta", mapping={"user_id": "u"}), str(tmp_path / "d")
    )
    assert tuple(_raw(good).first()) == ("u1", "i1", "click", None, "2026-01-01 00:00:00", None)
    with pytest.raises(SourceError, match=r"d: source has no column 'user_id' for user_id"):
        read_raw_events(spark, SourceConfig(format="delta"), str(tmp_path / "d"))


def test_unknown_preset_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"source\.preset \(from override .*\): expected one of"):
        load_config(CONF_DIR, "test", ["source.preset=movielens_xyz"])


def test_every_preset_has_a_layout() -> None:
    assert set(PRESETS) == set(choices(SourcePreset))
    for preset in PRESETS:
        assert resolve_source(SourceConfig(preset=preset)).format in choices(SourceFormat)


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/data here (optional real files)")
@pytest.mark.parametrize(
    "preset, rel_path",
    [
        ("movielens_csv", "ml-latest-small/ratings.csv"),
        ("lastfm_user_artists", "hetrec2011-lastfm-2k/user_artists.dat"),
        ("amazon_ratings", "amazon2018-magazine-subscriptions"),
    ],
)
def test_real_public_files_every_row_accounted(
    spark: SparkSession, preset: str, rel_path: str
) -> None:
    """The readers on the real public files (read in place, never copied)."""
    path = SHARED / rel_path
    if path.is_dir():
        path = next(p for p in path.iterdir() if p.suffix == ".csv")
    source = resolve_source(SourceConfig(preset=preset, item_catalog=None))
    raw = read_raw_events(spark, source, str(path), dt.date(2026, 1, 1))
    checked = (
        raw.transform(
            with_reason,
            event_weights={"rating": 1.0, "play": 1.0},
            timestamp_format=source.timestamp_format,
            rating_min=0.5,
            rating_max=5.0,
        )
        .transform(with_duplicates)
        .persist()
    )
    data_lines = sum(1 for line in path.read_text(errors="replace").splitlines() if line.strip())
    n_in = raw.count()
    assert n_in == data_lines - (1 if source.header else 0)
    reasons = {r["reason"]: r["count"] for r in checked.groupBy("reason").count().collect()}
    assert sum(reasons.values()) == n_in
    # real data is clean apart from Amazon's exact duplicates
    assert set(reasons) <= {None, "duplicate"}
    if preset == "amazon_ratings":
        assert reasons["duplicate"] > 0
    checked.unpersist()


HEADER = "user_id,item_id,event_type,value,event_ts"


def test_each_file_is_read_by_its_own_header(spark: SparkSession, tmp_path: Path) -> None:
    """Files of one source may order their columns differently or add some: mapped by name."""
    (tmp_path / "a.csv").write_text(f"{HEADER}\nu1,i1,view,,2026-01-01 10:00:00\n")
    (tmp_path / "b.csv").write_text(
        "item_id,user_id,event_type,value,event_ts\ni2,u2,click,,2026-01-01 11:00:00\n"
    )
    (tmp_path / "c.csv").write_text(
        "user_id,note,item_id,event_type,value,event_ts,extra\n"
        "u3,hello,i3,rating,4,2026-01-01 12:00:00,x\n"
        "u3,bad\n"
    )
    # a BOM before the header (Excel's UTF-8 CSV) does not end up in the first name
    (tmp_path / "d.csv").write_bytes(
        b"\xef\xbb\xbf" + f"{HEADER}\r\nu4,i4,view,,2026-01-01 13:00:00\r\n".encode()
    )
    got = read_raw_events(spark, SourceConfig(format="csv", header=True), str(tmp_path))
    expected = [
        ("u1", "i1", "view", None, "2026-01-01 10:00:00", None),
        ("u2", "i2", "click", None, "2026-01-01 11:00:00", None),
        ("u3", "i3", "rating", "4", "2026-01-01 12:00:00", None),
        ("u3", None, None, None, None, "u3,bad"),
        ("u4", "i4", "view", None, "2026-01-01 13:00:00", None),
    ]
    assert_raw_rows(spark, got, expected)


def test_a_file_lacking_a_mapped_column_is_named(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(f"{HEADER}\nu1,i1,view,,2026-01-01 10:00:00\n")
    (tmp_path / "b.csv").write_text("user_id,item,event_type,event_ts\nu2,i2,view,2026-01-01\n")
    with pytest.raises(SourceError, match=r"b\.csv: source has no column 'item_id' for item_id"):
        read_raw_events(spark, SourceConfig(format="csv", header=True), str(tmp_path))


@pytest.mark.parametrize("compressed", [False, True])
def test_a_line_with_too_many_fields_is_malformed(
    spark: SparkSession, tmp_path: Path, compressed: bool
) -> None:
    wide = ",".join(["x"] * 30_000)  # past univocity's default limit of 20,480 columns
    text = f"{HEADER}\nu1,i1,view,,2026-01-01 10:00:00\n{wide}\nu2,i2,view,,2026-01-01 10:00:00\n"
    if compressed:  # a few hundred bytes on disk: the file's size does not bound its lines
        (tmp_path / "e.csv.gz").write_bytes(gzip.compress(text.encode()))
    else:
        (tmp_path / "e.csv").write_text(text)
    got = read_raw_events(spark, SourceConfig(format="csv", header=True), str(tmp_path))
    assert sorted((r["user_id"], r["raw_record"]) for r in got.collect()) == [
        ("u1", None),
        ("u2", None),
        ("x", wide),
    ]


@pytest.mark.parametrize("name", ["events[1].csv", "events{a,b}.csv", "ev*nts?.csv", "a\\b.csv"])
def test_file_names_are_literal(spark: SparkSession, tmp_path: Path, name: str) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / name).write_text("u1,i1,view,,2026-01-01 10:00:00\n")
    (folder / "eventsa.csv").write_text("u2,i2,view,,2026-01-01 10:00:00\n")  # a glob would match
    for path in (folder / name, folder):
        got = read_raw_events(spark, SourceConfig(format="csv"), str(path))
        users = sorted(r["user_id"] for r in got.collect())
        assert users == (["u1"] if path != folder else ["u1", "u2"])


def test_parquet_typed_timestamps_are_taken_as_they_are(
    spark: SparkSession, tmp_path: Path
) -> None:
    ts = dt.datetime(2026, 1, 1, 10, 0, 0)
    rows = [("u1", "i1", "view", ts, ts, dt.date(2026, 1, 1))]
    spark.createDataFrame(
        rows,
        "user_id string, item_id string, event_type string, ts timestamp, "
        "ts_ntz timestamp_ntz, day date",
    ).write.parquet(str(tmp_path / "p"))
    for column in ["ts", "ts_ntz", "day"]:
        for fmt in ["yyyy-MM-dd'T'HH:mm:ss", "epoch_seconds"]:  # the text format does not matter
            source = SourceConfig(format="parquet", mapping={"event_ts": column})
            raw = read_raw_events(spark, source, str(tmp_path / "p"))
            checked = raw.transform(
                with_reason,
                event_weights={"view": 1.0},
                timestamp_format=fmt,
                rating_min=0.5,
                rating_max=5.0,
            ).first()
            want = ts if column != "day" else dt.datetime(2026, 1, 1)
            assert (checked["reason"], checked["_parsed_ts"]) == (None, want), (column, fmt)


def test_parquet_files_with_differing_types_are_read(spark: SparkSession, tmp_path: Path) -> None:
    spark.createDataFrame(
        [("u1", 7, "view", 1.5, "2026-01-01 10:00:00")],
        "user_id string, item_id int, event_type string, value double, event_ts string",
    ).write.parquet(str(tmp_path / "p" / "day=1"))
    spark.createDataFrame(
        [(2, "i9", "view", "2026-01-01 11:00:00", 3)],
        "user_id long, item_id string, event_type string, event_ts string, value int",
    ).write.parquet(str(tmp_path / "p" / "day=2"))
    got = read_raw_events(spark, SourceConfig(format="parquet"), str(tmp_path / "p"))
    expected = [
        ("u1", "7", "view", "1.5", "2026-01-01 10:00:00", None),
        ("2", "i9", "view", "3", "2026-01-01 11:00:00", None),
    ]
    assert_raw_rows(spark, got, expected)


@pytest.mark.integration
def test_stream_refuses_a_landing_file_with_another_header(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A stream has one schema: a file with another header is named, never read by position."""
    config = load_config(
        CONF_DIR,
        "test",
        [f"paths.root={tmp_path}", "source.header=true", "source.item_catalog=null"],
    )
    landing = Path(config.path(config.stream.landing))
    landing.mkdir(parents=True)
    (landing / "a.csv").write_text(f"{HEADER}\nu1,i1,view,,2026-01-01 10:00:00\n")
    (landing / "b [2].csv").write_text(  # a name Spark's file_path percent-encodes
        "item_id,user_id,event_type,value,event_ts\ni2,u2,view,,2026-01-01 10:00:00\n"
    )
    with pytest.raises(SourceError, match=r"b \[2\]\.csv: header \['item_id', 'user_id'"):
        run_ingest_stream(spark, config, dt.date(2026, 1, 1))
