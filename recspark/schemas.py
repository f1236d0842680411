"""Table schemas and column-name constants: the contract of every table recspark writes."""

from __future__ import annotations

from pyspark.sql import types as T

# Column names
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
VALUE = "value"
EVENT_TS = "event_ts"
WEIGHT = "weight"
RUN_DATE = "run_date"
USER_INDEX = "user_index"
ITEM_INDEX = "item_index"
LABEL = "label"
STRENGTH = "strength"
LAST_TS = "last_ts"
N_EVENTS = "n_events"
RANK = "rank"
SCORE = "score"
EXPLANATION = "explanation"
REASON = "reason"
RAW_RECORD = "raw_record"
SOURCE_FILE = "source_file"

EVENT_ID = "event_id"
EVENT_DATE = "event_date"
# user_sequences
ITEM_SEQ = "item_seq"
TS_SEQ = "ts_seq"
SEQ_LEN = "seq_len"

RAW_COLUMNS = [USER_ID, ITEM_ID, EVENT_TYPE, VALUE, EVENT_TS]

# Partitioned by event_date; run_date is the ingest run that first inserted the event.
INTERACTIONS = T.StructType(
    [
        T.StructField(EVENT_ID, T.StringType(), False),  # the event key: a hash of its fields
        T.StructField(USER_ID, T.StringType(), False),
        T.StructField(ITEM_ID, T.StringType(), False),
        T.StructField(EVENT_TYPE, T.StringType(), False),  # lower case
        T.StructField(VALUE, T.DoubleType(), True),  # the rating or count; null for other events
        T.StructField(EVENT_TS, T.TimestampType(), False),  # UTC
        T.StructField(WEIGHT, T.DoubleType(), False),  # implicit-feedback weight (ingest.*)
        # the file it was read from; from Kafka kafka://<topic>/<partition>/<offset>
        T.StructField(SOURCE_FILE, T.StringType(), True),
        T.StructField(EVENT_DATE, T.DateType(), False),  # the partition
        T.StructField(RUN_DATE, T.DateType(), False),  # the ingest run that first brought it
    ]
)

INTERACTIONS_QUARANTINE = T.StructType(
    [
        T.StructField(USER_ID, T.StringType(), True),  # raw text, as read
        T.StructField(ITEM_ID, T.StringType(), True),  # raw text, as read
        T.StructField(EVENT_TYPE, T.StringType(), True),  # raw text, as read
        T.StructField(VALUE, T.StringType(), True),  # raw text, as read
        T.StructField(EVENT_TS, T.StringType(), True),  # raw text, as read
        T.StructField(RAW_RECORD, T.StringType(), True),  # a malformed line; Kafka: the message
        T.StructField(SOURCE_FILE, T.StringType(), True),  # as in interactions
        T.StructField(REASON, T.StringType(), False),  # the first check it failed
        T.StructField(RUN_DATE, T.DateType(), False),
    ]
)

# A forgotten user's row in `user_ids` (`recspark forget`): the id replaced by this prefix and the
# index, so the index is never given again; a NUL never survives ingest, so no real id matches.
FORGOTTEN = "\x00forgotten:"

ID_MAP_USERS = T.StructType(
    [
        T.StructField(USER_ID, T.StringType(), False),  # a forgotten user's: FORGOTTEN + the index
        T.StructField(USER_INDEX, T.IntegerType(), False),  # from 0, kept; new ids appended
    ]
)
ID_MAP_ITEMS = T.StructType(
    [
        T.StructField(ITEM_ID, T.StringType(), False),
        T.StructField(ITEM_INDEX, T.IntegerType(), False),  # from 0, kept; new ids appended
    ]
)

TRAIN_INTERACTIONS = T.StructType(
    [
        T.StructField(USER_INDEX, T.IntegerType(), False),
        T.StructField(ITEM_INDEX, T.IntegerType(), False),
        T.StructField(STRENGTH, T.DoubleType(), False),  # the pair's events' summed weights
        T.StructField(N_EVENTS, T.LongType(), False),  # the pair's events
        T.StructField(LAST_TS, T.TimestampType(), False),  # the pair's latest event
        T.StructField(RUN_DATE, T.DateType(), False),
    ]
)
HOLDOUT = TRAIN_INTERACTIONS

TRAINING_SET = T.StructType(
    [
        T.StructField(USER_INDEX, T.IntegerType(), False),
        T.StructField(ITEM_INDEX, T.IntegerType(), False),
        T.StructField(LABEL, T.FloatType(), False),  # 1: a positive; 0: a sampled negative
        T.StructField(RUN_DATE, T.DateType(), False),
    ]
)

MODEL_METRICS = T.StructType(
    [
        T.StructField(RUN_DATE, T.DateType(), False),
        T.StructField("model", T.StringType(), False),  # kind, champion, baseline or candidate
        T.StructField("model_version", T.StringType(), True),  # the model's and the champion's
        T.StructField("metric", T.StringType(), False),  # precision, recall, ndcg, map, mrr, ...
        T.StructField("k", T.IntegerType(), False),  # the cut-off
        T.StructField("value", T.DoubleType(), False),
        T.StructField("mlflow_run_id", T.StringType(), True),
        # all | new | active (users by number of train interactions, evaluate.active_min_...)
        # | validation (the train stage's candidates on its validation users)
        T.StructField("segment", T.StringType(), True),
    ]
)

RECOMMENDATIONS = T.StructType(
    [
        T.StructField(USER_ID, T.StringType(), False),
        T.StructField(RANK, T.IntegerType(), False),  # 1 = best
        T.StructField(ITEM_ID, T.StringType(), False),
        T.StructField(SCORE, T.FloatType(), False),
        # personalized (the model) | popular_fallback (a user the model cannot score: no history
        # or unknown to it; the most popular unseen items)
        T.StructField(REASON, T.StringType(), False),
        # item_id of the seen item that supports the recommendation most; null for fallbacks
        T.StructField(EXPLANATION, T.StringType(), True),
        T.StructField("model_name", T.StringType(), False),  # the model's kind
        T.StructField("model_version", T.StringType(), False),
        T.StructField("run_id", T.StringType(), False),  # the pipeline run, as in pipeline_runs
        T.StructField(RUN_DATE, T.DateType(), False),
    ]
)

# Appended by `recspark forget`: one row per request, no user ids (GDPR article 17 audit).
FORGET_REQUESTS = T.StructType(
    [
        T.StructField("request_id", T.StringType(), False),
        T.StructField("requested_at", T.TimestampType(), False),
        T.StructField("finished_at", T.TimestampType(), False),
        T.StructField("status", T.StringType(), False),  # completed | failed
        T.StructField("users_requested", T.LongType(), False),
        T.StructField("users_found", T.LongType(), False),  # in the id map
        T.StructField("rows_deleted", T.MapType(T.StringType(), T.LongType()), False),
        T.StructField("online_deleted", T.LongType(), True),  # entries in the online store
        T.StructField("vacuum_retention_hours", T.DoubleType(), False),
        T.StructField("error", T.StringType(), True),
    ]
)

# Appended by the monitoring checks (recspark/health.py): one row per check and subject per run.
RUN_HEALTH = T.StructType(
    [
        T.StructField("run_id", T.StringType(), False),
        T.StructField("run_date", T.DateType(), False),
        T.StructField("phase", T.StringType(), False),  # after_ingest | before_publish
        T.StructField("checked_at", T.TimestampType(), False),
        T.StructField("check", T.StringType(), False),
        T.StructField("subject", T.StringType(), False),  # all, or a quarantine reason
        T.StructField("value", T.DoubleType(), True),
        T.StructField("baseline", T.DoubleType(), True),  # median over the trailing runs
        T.StructField("compared", T.DoubleType(), True),  # value / baseline (churn: value)
        T.StructField("status", T.StringType(), False),  # ok | warn | fail | no_baseline | skipped
        T.StructField("thresholds", T.StringType(), False),  # JSON of the check's config
        T.StructField("message", T.StringType(), False),
    ]
)

# Appended once per stage run (a log).
PIPELINE_RUNS = T.StructType(
    [
        T.StructField("run_id", T.StringType(), False),
        T.StructField("run_date", T.DateType(), False),
        T.StructField("stage", T.StringType(), False),
        T.StructField("status", T.StringType(), False),  # succeeded | failed
        T.StructField("started_at", T.TimestampType(), False),
        T.StructField("duration_s", T.DoubleType(), False),
        T.StructField("rows_in", T.LongType(), True),
        T.StructField("rows_clean", T.LongType(), True),
        T.StructField("rows_quarantined", T.LongType(), True),
        T.StructField("quarantined_by_reason", T.MapType(T.StringType(), T.LongType()), True),
        T.StructField("config_hash", T.StringType(), False),
        T.StructField("code_version", T.StringType(), False),
        T.StructField("details", T.StringType(), True),  # JSON: the stage's result, or error
    ]
)

REFRESH_DATE = "refresh_date"

# Appended by `recspark refresh` (recspark/online/refresh.py): one row per refreshed user per
# micro-batch, what it wrote to the online store; partitioned by refresh_date.
FRESH_RECOMMENDATIONS = T.StructType(
    [
        T.StructField(USER_ID, T.StringType(), False),
        T.StructField("items", T.ArrayType(T.StringType()), False),  # best first
        T.StructField("scores", T.ArrayType(T.FloatType()), False),
        T.StructField(REASON, T.StringType(), False),  # personalized | popular_fallback
        T.StructField("event_ts", T.TimestampType(), False),  # the user's latest new event
        T.StructField("refreshed_at", T.TimestampType(), False),  # when it was written
        T.StructField("new_events", T.IntegerType(), False),  # events since the night
        T.StructField("unknown_items", T.IntegerType(), False),  # of those, items the model lacks
        T.StructField("written", T.BooleanType(), False),  # false: the version was replaced
        T.StructField("model_version", T.StringType(), False),
        T.StructField("online_version", T.StringType(), False),
        T.StructField("batch_id", T.LongType(), False),
        T.StructField(REFRESH_DATE, T.DateType(), False),
    ]
)

# Appended by `recspark refresh`: one row per micro-batch, the stream's health (the run report
# and `recspark health` read it).
REFRESH_BATCHES = T.StructType(
    [
        T.StructField("batch_id", T.LongType(), False),
        T.StructField("started_at", T.TimestampType(), False),
        T.StructField("batch_s", T.DoubleType(), False),  # ingest and refresh together
        T.StructField("rows_in", T.LongType(), False),
        T.StructField("clean", T.LongType(), False),
        T.StructField("quarantined", T.LongType(), False),
        T.StructField("users", T.LongType(), False),  # with new clean events
        T.StructField("written", T.LongType(), False),
        T.StructField("not_written", T.LongType(), False),  # the version changed meanwhile
        T.StructField("unknown_items", T.LongType(), False),
        T.StructField("latency_p50_s", T.DoubleType(), True),  # event time -> written, per user
        T.StructField("latency_p95_s", T.DoubleType(), True),
        T.StructField("latency_max_s", T.DoubleType(), True),
        T.StructField("offsets_behind", T.LongType(), True),  # Kafka lag after the last batch
        T.StructField("model_version", T.StringType(), True),
        T.StructField("online_version", T.StringType(), True),
        T.StructField(REFRESH_DATE, T.DateType(), False),
    ]
)
