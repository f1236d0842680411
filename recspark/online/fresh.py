"""The worker side of the refresh stream: a user's new top-K from their history, with the model
of the online store's current version (`recspark.online.refresh` is the driver side).

Each Python worker loads the model version once (kept between tasks, `SingleEntryCache`, keyed
by the version, so a new champion is loaded at the first batch that names it): its ranker, its
encoder (`recspark.models.encoders`), and its serving tables (each known user's index, seen
items and history in time order; item ids by index; popularity). Per block of users:

1. events since the night = the events the stream recorded for them in the online store
   (`RedisStore.events`; those of a run date after the night's) + the batch's, each once;
2. history = the night's history (the serving table's `history`, or `seen` for a version
   written before it had one) + the positive events since the night, oldest first; seen = the
   night's seen items + every item since the night;
3. vector = the encoder on the history (a user the night never saw: from the events alone);
4. top-K over the whole catalog with every seen item excluded (`Ranker.top_k`); a user with no
   known positive item gets the most popular unseen items (`popular_fallback`), as the night;
5. one write per block to the online store, only while the version is current
   (`RedisStore.write_if_current`); then the batch's events are recorded
   (`RedisStore.add_events`: by event id, so a replayed batch records nothing twice; at most
   `refresh.history_events` per user, expiring `refresh.history_ttl_s` after the last).

Events for items the model does not know are left out of the history (the model has no vector
for them) and counted in `unknown_items`, as the night's scoring leaves them out.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from recspark.models.encoders import UserEncoder, encoder_of
from recspark.models.served import PERSONALIZED, POPULAR_FALLBACK, USERS_ARTIFACT, Lookup
from recspark.online.store import EventChange, RedisStore
from recspark.ranking.cache import SingleEntryCache
from recspark.ranking.factors import SeenItems
from recspark.schemas import REASON, USER_ID

ITEM_IDS, POSITIVE, EVENT_TS = "item_ids", "positive", "event_ts"
EVENT_IDS, EVENT_US = "event_ids", "event_us"
OUTPUT_SCHEMA = (
    "user_id string, items array<string>, scores array<float>, reason string, "
    "event_ts timestamp, refreshed_at timestamp, new_events int, unknown_items int, "
    "written boolean, model_version string, online_version string"
)


@dataclass(frozen=True)
class Target:
    """What a batch refreshes with: the online store's current version and its model."""

    online_version: str
    model_version: str
    run_date: str
    tracking_uri: str
    model_uri: str


@dataclass
class FreshModel:
    """A model version as a worker keeps it."""

    lookup: Lookup
    encoder: UserEncoder
    history: SeenItems  # row i: the night's history of lookup.users[i], oldest first
    items: pd.Index  # item_id -> item_index


@dataclass(frozen=True)
class Keep:
    """How the users' events since the night are kept in the online store."""

    run_date: str  # the batch's (what ingest stamps its rows with)
    max_events: int  # per user: the oldest beyond are dropped
    ttl_s: int  # after the user's last write


_WORKER_MODEL: SingleEntryCache[FreshModel] = SingleEntryCache()


def load_fresh_model(tracking_uri: str, model_uri: str, length: int) -> FreshModel:
    """The model version `model_uri` (a registered pyfunc of `recspark.models.served`)."""
    import mlflow
    import mlflow.pyfunc
    import pyarrow.parquet as pq

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    recommender = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    lookup = recommender.lookup
    users = pq.read_table(recommender.artifacts[USERS_ARTIFACT])
    column = "history" if "history" in users.column_names else "seen"
    return FreshModel(
        lookup=lookup,
        encoder=encoder_of(recommender.scoring_model, length),
        history=SeenItems.from_arrow(users.column(column).combine_chunks()),
        items=pd.Index(lookup.item_ids),
    )


def worker_model(target: Target, length: int) -> FreshModel:
    return _WORKER_MODEL.get(
        (target.tracking_uri, target.model_uri),
        lambda: load_fresh_model(target.tracking_uri, target.model_uri, length),
    )


@dataclass(frozen=True)
class Block:
    """A block of users' refreshed inputs, in model indices."""

    user_index: NDArray[np.int64]  # -1: a user the night never saw
    history: SeenItems
    seen: SeenItems
    new_events: NDArray[np.int32]
    unknown: NDArray[np.int32]


def _concat(a: NDArray[Any], b: NDArray[Any]) -> NDArray[np.int64]:
    return np.concatenate([a, b]).astype(np.int64, copy=False)


def block_inputs(model: FreshModel, frame: pd.DataFrame) -> Block:
    """The block's users with the night's history and their new events appended."""
    rows = model.lookup.users.get_indexer(frame[USER_ID].astype(str))
    user_index = np.where(rows >= 0, model.lookup.user_index[np.maximum(rows, 0)], -1)
    histories, seens, unknown = [], [], []
    empty = np.zeros(0, np.int64)
    for row, ids, positive in zip(rows, frame[ITEM_IDS], frame[POSITIVE], strict=True):
        items = model.items.get_indexer(pd.Index(list(ids), dtype=object))
        known = items >= 0
        unknown.append(int((~known).sum()))
        night_history = model.history[row] if row >= 0 else empty
        night_seen = model.lookup.seen[row] if row >= 0 else empty
        histories.append(_concat(night_history, items[known & np.asarray(positive, bool)]))
        seens.append(np.unique(_concat(night_seen, items[known])))
    return Block(
        user_index=user_index.astype(np.int64),
        history=SeenItems.from_lists(histories),
        seen=SeenItems.from_lists(seens),
        new_events=np.asarray([len(ids) for ids in frame[ITEM_IDS]], np.int32),
        unknown=np.asarray(unknown, np.int32),
    )


def rank_fresh(
    model: FreshModel, block: Block, k: int
) -> tuple[list[list[str]], NDArray[Any], NDArray[np.bool_]]:
    """(item ids, scores (B, k), personalized) of a block: the model's top-K, or the most
    popular unseen items for a user without a known positive item."""
    personal = block.history.lengths() > 0
    vectors = model.encoder.vectors(block.user_index, block.history)
    items, scores = model.lookup.model.top_k(vectors, block.seen, k)
    if not personal.all():
        ones = np.ones((len(block.user_index), 1), np.float32)
        popular_items, popular_scores = model.lookup.popular.top_k(ones, block.seen, k)
        items = np.where(personal[:, None], items, popular_items)
        scores = np.where(personal[:, None], scores, popular_scores)
    ids = [[str(model.lookup.item_ids[i]) for i in row if i >= 0] for row in items]
    return ids, scores, personal


def _entry(us: int, positive: bool, run_date: str, item: str) -> str:
    return f"{us}|{int(positive)}|{run_date}|{item}"


Event = tuple[int, bool, str, str]  # (event time in µs, positive, run date, item id)


def _parsed(entry: str) -> Event:
    us, positive, run_date, item = entry.split("|", 3)
    return int(us), positive == "1", run_date, item


def _user_events(
    recorded: dict[str, str], batch: dict[str, Event], night: str, keep: Keep
) -> tuple[list[Event], EventChange]:
    """One user's events since the night, oldest first, and what to record (user id left
    empty): the batch's new events; the recorded ones of the night or before, and the oldest
    beyond `keep.max_events`, dropped."""
    known = {eid: _parsed(entry) for eid, entry in recorded.items()}
    stale = [eid for eid, event in known.items() if event[2] <= night and eid not in batch]
    live = {eid: event for eid, event in known.items() if event[2] > night} | batch
    order = sorted(live, key=lambda eid: (live[eid][0], eid))
    over = order[: max(len(order) - keep.max_events, 0)]
    dropped = stale + [eid for eid in over if eid in known]
    added = {
        eid: _entry(us, positive, keep.run_date, item)
        for eid, (us, positive, _, item) in batch.items()
        if eid not in known and eid not in over
    }
    return [live[eid] for eid in order[len(over) :]], ("", added, dropped)


def since_night(
    frame: pd.DataFrame, recorded: list[dict[str, str]], night: str, keep: Keep
) -> tuple[pd.DataFrame, list[EventChange]]:
    """The block with each user's events since the night (recorded, of a run date after
    `night`, and the batch's) in ITEM_IDS and POSITIVE, oldest first; the changes to record."""
    items, positives, changes = [], [], []
    columns = (frame[USER_ID], frame[EVENT_IDS], frame[EVENT_US], frame[ITEM_IDS], frame[POSITIVE])
    rows = zip(*columns, recorded, strict=True)
    for user, ids, us, item_ids, positive, known in rows:
        batch = {
            str(eid): (int(t), bool(p), keep.run_date, str(i))
            for eid, t, i, p in zip(ids, us, item_ids, positive, strict=True)
        }
        events, (_, added, dropped) = _user_events(known, batch, night, keep)
        items.append([event[3] for event in events])
        positives.append([event[1] for event in events])
        changes.append((str(user), added, dropped))
    return frame.assign(**{ITEM_IDS: items, POSITIVE: positives}), changes


def _iso(ts: Any) -> str:
    return pd.Timestamp(ts).isoformat()


def refreshed_frame(
    model: FreshModel, frame: pd.DataFrame, target: Target, store: RedisStore, k: int, keep: Keep
) -> pd.DataFrame:
    """Refresh one block of users (the batch's events of each) and write them, then record
    their events; the fresh_recommendations rows."""
    users = frame[USER_ID].astype(str).tolist()
    frame, changes = since_night(frame, store.events(users), target.run_date, keep)
    block = block_inputs(model, frame)
    ids, scores, personal = rank_fresh(model, block, k)
    reasons = np.where(personal, PERSONALIZED, POPULAR_FALLBACK)
    score_lists = [list(map(float, row[: len(i)])) for row, i in zip(scores, ids, strict=True)]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    payloads = [
        json.dumps(
            {"items": i, "scores": s, "reason": str(r), "run_date": target.run_date}
            | {"model_version": target.model_version, "refreshed_at": now.isoformat()}
            | {"event_ts": _iso(ts)}
        )
        for i, s, r, ts in zip(ids, score_lists, reasons, frame[EVENT_TS], strict=True)
    ]
    written = store.write_if_current(target.online_version, zip(users, payloads, strict=True))
    store.add_events(changes, keep.ttl_s)
    return pd.DataFrame(
        {
            USER_ID: users, "items": ids, "scores": score_lists, REASON: reasons,
            EVENT_TS: frame[EVENT_TS], "refreshed_at": pd.Timestamp(now),
            "new_events": block.new_events, "unknown_items": block.unknown,
            "written": written is not None, "model_version": target.model_version,
            "online_version": target.online_version,
        }
    )  # fmt: skip


def refresh_partition(
    target: Target, store: RedisStore, k: int, length: int, block_size: int, keep: Keep
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The mapInPandas function: refresh and write every user of a partition."""

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import torch

        torch.set_num_threads(1)
        model = worker_model(target, length)
        for frame in frames:
            for start in range(0, len(frame), block_size):
                part = frame.iloc[start : start + block_size].reset_index(drop=True)
                yield refreshed_frame(model, part, target, store, k, keep)

    return run


__all__ = [
    "OUTPUT_SCHEMA",
    "FreshModel",
    "Keep",
    "Target",
    "block_inputs",
    "load_fresh_model",
    "rank_fresh",
    "refresh_partition",
    "refreshed_frame",
    "since_night",
]
