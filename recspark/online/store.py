"""Key-value stores an application reads recommendations from at request time.

`OnlineStore` is what the export stage needs of a store; `RedisStore` is the one recspark ships.
Another store (DynamoDB, Cassandra, ...) implements the same six methods (and
`write_if_current` for the refresh stream).

Layout in Redis (prefix `online.key_prefix`, default `recspark`):

    {prefix}:current             the version readers use (a string)
    {prefix}:recs:{version}      hash: user_id -> JSON {"items": [...], "scores": [...],
                                 "reason": ..., "run_date": ..., "model_version": ...}
    {prefix}:meta:{version}      hash: run_id, run_date, model_version, users, written_at
    {prefix}:versions            sorted set of the versions written, by the time they went current
    {prefix}:events:{user_id}    hash: event_id -> "ts_us|positive|run_date|item_id", the user's
                                 events the refresh stream has seen (its history since the
                                 night; `refresh.history_ttl_s` after its last event it expires)

A reader asks `GET {prefix}:current`, then `HGET {prefix}:recs:{that version} {user_id}`. A
version's hash is complete before `current` names it and is never written again, so a reader sees
one run's recommendations, never two mixed. When a new version goes current, the ones before the
`keep_versions` newest get an expiry (`expire_after_s`, time for readers that fetched the old
pointer to finish) and then disappear.

The refresh stream (`recspark refresh`) is the one writer of the current version's hash: it
replaces a user's entry with their refreshed top-K, one HSET per user inside a script that first
checks the version is still current, so a reader gets a user's old list or their new one, never
a mix, and never a list of another model than the version's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from recspark.credentials import redact

# (user_id, new events: event id -> entry, event ids to drop): `RedisStore.add_events`.
EventChange = tuple[str, Mapping[str, str], Sequence[str]]


class OnlineStore(Protocol):
    """What the export stage needs of a store (see the module docstring for Redis's layout)."""

    def current(self) -> str | None: ...

    def is_complete(self, version: str) -> bool: ...

    def clear(self, version: str) -> None: ...

    def write(self, version: str, rows: Iterable[tuple[str, str]]) -> int: ...

    def publish(self, version: str, meta: Mapping[str, str]) -> list[str]: ...

    def forget(self, user_ids: Iterable[str]) -> int: ...


@dataclass(frozen=True)
class RedisStore:
    """The Redis layout of the module docstring. Picklable: each Spark task opens its own
    connection from the URL, with `password` (when given) instead of one in the URL."""

    url: str = field(repr=False)
    prefix: str = "recspark"
    batch_size: int = 1000
    keep_versions: int = 2
    expire_after_s: int = 3600
    timeout_s: float = 10.0
    password: str | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        """The URL as it may be printed: without its password."""
        return redact(self.url)

    def client(self) -> Any:
        import redis

        url, extra = self.url, {}
        if self.password is not None:
            # The URL's own password would win over the keyword (redis-py): drop it.
            url, extra = _without_password(url), {"password": self.password}
        return redis.Redis.from_url(
            url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s, **extra
        )

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def current(self) -> str | None:
        value = self.client().get(self.key("current"))
        return None if value is None else value.decode()

    def meta(self, version: str) -> dict[str, str]:
        """The metadata `publish` wrote for `version` (empty when there is none)."""
        raw = self.client().hgetall(self.key("meta", version))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def is_complete(self, version: str) -> bool:
        """Whether `version` was written whole and published (its metadata exists)."""
        return bool(self.client().exists(self.key("meta", version)))

    def clear(self, version: str) -> None:
        """Drop what an earlier, failed attempt wrote under `version` (never the current one)."""
        if version == self.current():
            raise ValueError(f"version {version} is current: it is never rewritten")
        self.client().unlink(self.key("recs", version), self.key("meta", version))

    def write(self, version: str, rows: Iterable[tuple[str, str]]) -> int:
        """HSET (user_id, JSON) rows into the version's hash, `batch_size` users per pipelined
        round trip; the number written."""
        client, key, written = self.client(), self.key("recs", version), 0
        batch: dict[str, str] = {}
        for user_id, payload in rows:
            batch[user_id] = payload
            if len(batch) >= self.batch_size:
                written += _flush(client, key, batch)
        return written + _flush(client, key, batch)

    def write_if_current(self, version: str, rows: Iterable[tuple[str, str]]) -> int | None:
        """HSET (user_id, JSON) rows into `version`'s hash only while `version` is current
        (the refresh stream, `recspark.online.refresh`): each round trip of `batch_size` users
        is one Lua script, atomic in Redis, that checks `current` and writes. The number
        written, or None when `version` stopped being current (the rest is not written)."""
        script = self.client().register_script(_WRITE_IF_CURRENT)
        keys = [self.key("current"), self.key("recs", version)]
        written, batch = 0, []
        for user_id, payload in rows:
            batch += [user_id, payload]
            if len(batch) >= 2 * self.batch_size:
                if int(script(keys=keys, args=[version, *batch])) < 0:
                    return None
                written, batch = written + len(batch) // 2, []
        if batch and int(script(keys=keys, args=[version, *batch])) < 0:
            return None
        return written + len(batch) // 2

    def events(self, user_ids: Sequence[str]) -> list[dict[str, str]]:
        """Each user's recorded events (`add_events`), event id -> entry, in one round trip
        per `batch_size` users."""
        client, out = self.client(), []
        for start in range(0, len(user_ids), self.batch_size):
            pipe = client.pipeline(transaction=False)
            for user_id in user_ids[start : start + self.batch_size]:
                pipe.hgetall(self.key("events", user_id))
            out += [{k.decode(): v.decode() for k, v in raw.items()} for raw in pipe.execute()]
        return out

    def add_events(self, rows: Iterable[EventChange], ttl_s: int) -> None:
        """Record users' new events (event id -> entry) and drop old ones: writing an event id
        twice keeps one entry. A user's events expire `ttl_s` after the last write."""
        client, pipe = self.client(), None
        for n, (user_id, added, dropped) in enumerate(rows, 1):
            if pipe is None:
                pipe = client.pipeline(transaction=False)
            key = self.key("events", user_id)
            if added:
                pipe.hset(key, mapping=dict(added))
            if dropped:
                pipe.hdel(key, *dropped)
            pipe.expire(key, ttl_s)
            if n % self.batch_size == 0:
                pipe.execute()
                pipe = None
        if pipe is not None:
            pipe.execute()

    def publish(self, version: str, meta: Mapping[str, str]) -> list[str]:
        """Make `version` current in one transaction; the older versions set to expire."""
        client = self.client()
        versions_key = self.key("versions")
        now = time.time()
        pipe = client.pipeline(transaction=True)
        pipe.hset(self.key("meta", version), mapping={**meta, "written_at": f"{now:.3f}"})
        pipe.persist(self.key("recs", version))
        pipe.persist(self.key("meta", version))
        pipe.set(self.key("current"), version)
        pipe.zadd(versions_key, {version: now})
        pipe.execute()
        newest = {v.decode() for v in client.zrevrange(versions_key, 0, self.keep_versions - 1)}
        expiring = [
            v.decode() for v in client.zrange(versions_key, 0, -1) if v.decode() not in newest
        ]
        if expiring:
            pipe = client.pipeline(transaction=True)
            for old in expiring:
                pipe.expire(self.key("recs", old), self.expire_after_s)
                pipe.expire(self.key("meta", old), self.expire_after_s)
            pipe.zrem(versions_key, *expiring)
            pipe.execute()
        return expiring

    def stage(self, name: str, batch_id: int, rows: Any) -> None:
        """Keep a batch's rows (a pyarrow Table with a `user_id` column) under `name` until
        `unstage`: the refresh stream's rows on their way to a Delta table, written by the slow
        path (`recspark.online.refresh.drain_fresh`). Staging a batch id again replaces it."""
        self.client().set(self.key("staged", name, str(batch_id)), _arrow_bytes(rows))

    def staged(self, name: str) -> dict[int, Any]:
        """The batches staged under `name`: batch id -> its rows (a pyarrow Table)."""
        client = self.client()
        keys = sorted(client.scan_iter(match=self.key("staged", name, "*"), count=1000))
        values = client.mget(keys) if keys else []
        return {
            int(key.decode().rsplit(":", 1)[1]): _arrow_rows(value)
            for key, value in zip(keys, values, strict=True)
            if value is not None
        }

    def unstage(self, name: str, batch_ids: Iterable[int]) -> None:
        """Drop the staged batches `batch_ids` of `name` (once their rows are in their table)."""
        keys = [self.key("staged", name, str(b)) for b in batch_ids]
        if keys:
            self.client().unlink(*keys)

    def forget(self, user_ids: Iterable[str]) -> int:
        """Delete the users' entries from every version (`recspark forget`): the one exception
        to "a version is never written again"; how many entries were deleted. The events the
        refresh stream recorded for them go too, and their staged rows (`stage`)."""
        fields = list(user_ids)
        if not fields:
            return 0
        client = self.client()
        for start in range(0, len(fields), self.batch_size):
            client.unlink(*(self.key("events", u) for u in fields[start : start + self.batch_size]))
        self._forget_staged(client, set(fields))
        return _forget_fields(client, self.key("recs", "*"), fields)

    def _forget_staged(self, client: Any, users: set[str]) -> None:
        """Rewrite every staged batch that holds one of `users` without their rows (WATCH: a
        batch unstaged meanwhile is left alone)."""
        import redis

        for key in client.scan_iter(match=self.key("staged", "*"), count=1000):
            while True:
                try:
                    _without_users(client, key, users)
                    break
                except redis.WatchError:  # restaged or unstaged meanwhile: read it again
                    continue


# KEYS: current, the version's hash; ARGV: the version, then user, payload, user, payload, ...
_WRITE_IF_CURRENT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return (#ARGV - 1) / 2
"""


def _arrow_bytes(rows: Any) -> bytes:
    """A pyarrow Table as the bytes of an Arrow IPC stream."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    return bytes(sink.getvalue().to_pybytes())


def _arrow_rows(blob: bytes) -> Any:
    """The pyarrow Table of an Arrow IPC stream's bytes (`_arrow_bytes`)."""
    import pyarrow as pa

    return pa.ipc.open_stream(blob).read_all()


def _without_users(client: Any, key: bytes, users: set[str]) -> None:
    """Rewrite the staged rows at `key` without those of `users`, in a transaction that fails
    (redis.WatchError) when the key changed since it was read; a missing key is left alone."""
    import pyarrow as pa
    import pyarrow.compute as pc

    with client.pipeline(transaction=True) as pipe:
        pipe.watch(key)
        value = pipe.get(key)
        if value is None:
            return
        rows = _arrow_rows(value)
        held = pc.is_in(rows.column("user_id"), pa.array(sorted(users), pa.string()))
        if not pc.any(held).as_py():
            return
        pipe.multi()
        pipe.set(key, _arrow_bytes(rows.filter(pc.invert(held))))
        pipe.execute()


def _without_password(url: str) -> str:
    """`url` without the password of its user part (`redis://user:pw@host` -> `redis://user@host`)."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user + '@' if user else ''}{host}{slash}{path}"


def _forget_fields(client: Any, pattern: str, fields: list[str]) -> int:
    """HDEL `fields` from every hash whose key matches `pattern`; how many were deleted."""
    deleted = 0
    for key in client.scan_iter(match=pattern, count=1000):
        deleted += int(client.hdel(key, *fields))
    return deleted


def _flush(client: Any, key: str, batch: dict[str, str]) -> int:
    """One HSET of the batch's fields (then emptied); how many it held."""
    if not batch:
        return 0
    n = len(batch)
    client.hset(key, mapping=batch)
    batch.clear()
    return n


__all__ = ["EventChange", "OnlineStore", "RedisStore"]
