"""Synthetic, deterministic UJET chat records shaped like the vendor's chat model.

Why this exists: the pipeline, its privacy guards and its benchmarks need realistic chats
(every field of the model, nulls, nested lists, personal-looking values)
without a UJET account. Records are a pure function of the UTC day, so the same window always
yields the same data, and a chat can be built on its own from its key: sorting, counting and
paging a window never requires building every record in it.

Each UTC day D holds its new chats (created and first updated within D) and the second versions
of earlier days' chats that land on D. The data follow a contact center's rhythm in the local
time of ``timezone`` (the demo passes its partition time zone, CHAT_ASSETS_TIMEZONE; UTC by
default):

- volume: busy weekday mornings and early afternoons, quiet nights, weekends at about half a
  weekday, plus each day's own noise and a slow swell over a quarter. ``chats_per_day`` is the
  average over weeks. A day's shape (new chats per hour) is computed from the day alone.
- queues: each menu path has its own service-level targets (Sales answers fast, Billing slower,
  Technical issue later still, VIP strictly) and waits that usually meet them.
- a bad afternoon every week: on one weekday, two to four hours starting between 12:00 and
  14:00 in which waits grow four to eight times, then two hours while the backlog clears. More
  chats miss their target and more are abandoned. ``service_level_event`` always follows from
  the wait and the queue's targets, as UJET defines them.
- late updates: 20% of a day's chats stay open and get a second version (same id and
  created_at, a later status and changed children) one to five days later, most the next day.
  Only the writing is late: an assigned chat ends minutes later, a queued customer gives up
  within the hour and most come back near the second version, queue again and are answered.
  Every queue wait lasts at most ``MAX_WAIT_MS`` (and a second), every agent leg at most
  ``MAX_TALK_MS``, in both versions.

``seasonal=False`` keeps queues, bad afternoons and late updates but gives every day exactly
``chats_per_day`` new chats, evenly over its hours (benchmarks use it for a fixed size). All
domains are reserved example domains.
"""

import math
import random
from bisect import bisect
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import accumulate, pairwise
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
IDS_PER_DAY = 1_000_000  # chat id = day ordinal * IDS_PER_DAY + index within the day
MAX_CHATS_PER_DAY = IDS_PER_DAY // 2  # the busiest days stay within a day's ids
REOPEN_SHARE = 0.2  # share of a day's chats that get a second version on a later day
LATE_SHARES = (0.55, 0.2, 0.12, 0.08, 0.05)  # of those, landing 1, 2, ... 5 days later
MAX_WAIT_MS = HOUR_MS  # the longest queue wait drawn, bad afternoons included
MAX_TALK_MS = 5_430_000  # the longest conversation with an agent (an hour and a half)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_CDN = "https://cdn.example-ujet.test"


class ChatVersionKey(NamedTuple):
    """Enough to filter, sort and page a chat version without building the record, and to
    build it later without knowing the day's shape."""

    updated_ms: int
    chat_id: int
    version: int
    created_ms: int
    reopened: bool  # version 1 stays open and gets a second version on a later day
    strain: float  # how much longer than usual queues were when the chat was created


class _Weighted:
    """A weighted choice drawing a single random number (cheaper than Random.choices)."""

    __slots__ = ("cum", "total", "values")

    def __init__(self, pairs: Sequence[tuple[Any, float]]) -> None:
        self.values = tuple(value for value, _ in pairs)
        self.cum = tuple(accumulate(weight for _, weight in pairs))
        self.total = self.cum[-1]

    def pick(self, rng: random.Random) -> Any:
        return self.values[bisect(self.cum, rng.random() * self.total)]


class _Timeline(NamedTuple):
    """The instants of a version-1 chat, in epoch milliseconds (None when not reached)."""

    status: str
    queue: int  # index into _QUEUES
    strain: float
    created: int
    queue_start: int  # after the virtual agent, if any
    assigned: int | None
    ends: int | None
    updated: int


_STATUS = _Weighted(
    [
        ("finished", 80),
        ("canceled", 7),
        ("no_response", 5),
        ("failed", 4),
        ("assigned", 3),
        ("queued", 1),
    ]
)
# Under strain more customers give up waiting.
_STRAINED_STATUS = _Weighted(
    [
        ("finished", 64),
        ("canceled", 23),
        ("no_response", 5),
        ("failed", 4),
        ("assigned", 3),
        ("queued", 1),
    ]
)
_REOPENED_STATUS = _Weighted([("assigned", 75), ("queued", 25)])
_CHAT_TYPE = _Weighted(
    [
        ("Messaging Inbound (App Chat)", 45),
        ("Messaging Inbound (Web Chat)", 35),
        ("Messaging (SMS)", 20),
    ]
)
_LANG = _Weighted([("en", 70), ("ko", 20), ("es", 10)])
_RATING = _Weighted([(5, 45), (4, 25), (3, 12), (2, 8), (1, 10)])
_TRANSFER_COUNT = _Weighted([(0, 75), (1, 20), (2, 5)])
_PHOTO_COUNT = _Weighted([(0, 70), (1, 20), (2, 7), (3, 3)])
_VIDEO_COUNT = _Weighted([(0, 92), (1, 7), (2, 1)])
_FINISH_REASON = _Weighted(
    [
        ("finish_reason_none", 40),
        ("end_user_finished", 30),
        ("agent_finished", 25),
        ("timeout", 5),
    ]
)
_FINISHED_SUB_STATUS = _Weighted(
    [("Disconnected by end user", 45), ("Ended by agent", 40), (None, 15)]
)
_FAIL_REASON = _Weighted([("unknown", 40), ("expired", 40), ("nothing", 20)])


class _Queue(NamedTuple):
    """A menu path chats queue in, with the service-level targets UJET reports on its rows."""

    menu_id: int
    parent_id: int
    position: int
    name: str
    path: str  # as shown inside duration lists
    target_time: int  # service_level_target_time, seconds
    target_percent: int  # service_level_target_percent
    abandon_threshold: int  # seconds; shorter abandons are excluded from the service level
    mean_wait: float  # seconds, on an ordinary hour: most waits meet the target
    share: float  # of the chats that enter here


_QUEUES: tuple[_Queue, ...] = (
    _Queue(3401, 3400, 1, "New order", "Sales/New order", 20, 80, 10, 9, 16),
    _Queue(3402, 3400, 2, "Upgrade plan", "Sales/Upgrade plan", 20, 80, 10, 9, 8),
    _Queue(3389, 3300, 1, "Billing", "Support/Billing", 60, 80, 20, 27, 18),
    _Queue(3390, 3300, 2, "Technical issue", "Support/Technical issue", 180, 80, 30, 95, 20),
    _Queue(3391, 3300, 3, "Account access", "Support/Account access", 90, 80, 20, 40, 8),
    _Queue(3501, 3500, 1, "배송 문의", "고객센터/배송 문의", 60, 80, 15, 27, 12),
    _Queue(3502, 3500, 2, "환불 요청", "고객센터/환불 요청", 120, 80, 20, 55, 10),
    _Queue(3601, 3600, 1, "Priority", "VIP/Priority", 10, 90, 5, 3.5, 8),
)
_QUEUE = _Weighted([(index, queue.share) for index, queue in enumerate(_QUEUES)])
_VIRTUAL_AGENTS: tuple[tuple[int, str], ...] = ((10, "Aria"), (11, "도우미 봇"), (12, "Max"))
_EN_FIRST = (
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Ethan",
    "Sophia",
    "Mason",
    "Mia",
    "Lucas",
    "Harper",
    "James",
)
_EN_LAST = (
    "Johnson",
    "Garcia",
    "Smith",
    "Nguyen",
    "Brown",
    "Martinez",
    "Walker",
    "Patel",
    "Lee",
    "Davis",
    "Clark",
    "Lopez",
)
_KO_NAMES = (
    "김민준",
    "이서연",
    "박지훈",
    "최수아",
    "정예준",
    "강하은",
    "조도윤",
    "윤지우",
    "장서준",
    "임하윤",
    "한지민",
    "오승현",
)


def _knuth(value: int) -> int:
    """A cheap deterministic 32-bit scramble (never Python's salted hash())."""
    return (value * 2_654_435_761) % 4_294_967_296


def _make_agents() -> tuple[tuple[int, str, str, str, str, str], ...]:
    """The fixed agent roster: (id, name, last_name, first_name, agent_number, avatar_url)."""
    agents = []
    for i, first in enumerate(_EN_FIRST):
        last = _EN_LAST[(i * 5) % len(_EN_LAST)]
        agents.append((first, last, f"{first} {last}"))
    for full in _KO_NAMES:
        agents.append((full[1:], full[0], full))
    roster = []
    for i, (first, last, name) in enumerate(agents):
        agent_id = 1001 + i * 3
        avatar = f"{_CDN}/avatars/{agent_id}/{_knuth(agent_id):08x}.png"
        roster.append((agent_id, name, last, first, f"{i + 7:03d}", avatar))
    return tuple(roster)


_AGENTS = _make_agents()


def _agent(index: int) -> dict[str, Any]:
    """A fresh agent object, so callers may redact records in place without side effects."""
    agent_id, name, last, first, number, avatar = _AGENTS[index]
    return {
        "id": agent_id,
        "name": name,
        "last_name": last,
        "first_name": first,
        "agent_number": number,
        "avatar_url": avatar,
    }


def _menu_object(index: int) -> dict[str, Any]:
    """The top-level / transfer form of a menu path (an object, unlike inside durations)."""
    queue = _QUEUES[index]
    return {
        "items_count": 2,
        "name": queue.name,
        "materialized_path": f"{queue.parent_id}/{queue.menu_id}",
    }


def _selected_menu(index: int, rng: random.Random) -> dict[str, Any]:
    queue = _QUEUES[index]
    return {
        "id": queue.menu_id,
        "name": queue.name,
        "parent_id": queue.parent_id,
        "position": queue.position,
        "deleted": False,
        "hidden": "false",  # documented as a string
        "menu_type": "ivr_menu",
        "output_msg": f"Connecting you to {queue.name}" if rng.random() < 0.6 else None,
    }


def _virtual_agent(index: int) -> dict[str, Any]:
    va_id, name = _VIRTUAL_AGENTS[index]
    return {"id": va_id, "name": name}


def _end_user(end_user_id: int) -> dict[str, Any]:
    """A customer whose identifier (phone, email or name) is stable across their chats."""
    h = _knuth(end_user_id)
    kind = h % 6
    if kind == 0:
        identifier = f"+1415555{100 + h % 100:04d}"
    elif kind == 1:
        identifier = f"(415) 555-{100 + (h >> 8) % 100:04d}"
    elif kind == 2:
        identifier = f"010-{1000 + (h >> 4) % 9000:04d}-{(h >> 17) % 10000:04d}"
    elif kind == 3:
        first = _EN_FIRST[(h >> 5) % len(_EN_FIRST)].lower()
        last = _EN_LAST[(h >> 9) % len(_EN_LAST)].lower()
        identifier = f"{first}.{last}{(h >> 13) % 100}@example.com"
    elif kind == 4:
        identifier = f"{_EN_FIRST[(h >> 6) % 12]} {_EN_LAST[(h >> 10) % 12]}"
    else:
        identifier = _KO_NAMES[(h >> 7) % len(_KO_NAMES)]
    out_contact_id = None if (h >> 20) % 5 == 0 else str(360_000_000_000 + h % 1_000_000_000)
    return {"id": end_user_id, "identifier": identifier, "out_contact_id": out_contact_id}


@lru_cache(maxsize=4096)
def _day_prefix(day_number: int) -> str:
    return (_EPOCH + timedelta(days=day_number)).strftime("%Y-%m-%dT")


def iso_ms(ms: int | None) -> str | None:
    """Epoch milliseconds -> '2019-07-17T07:27:14.000Z', the vendor's timestamp form."""
    if ms is None:
        return None
    day, rem = divmod(ms, DAY_MS)
    seconds, milli = divmod(rem, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day_prefix(day)}{hours:02d}:{minutes:02d}:{seconds:02d}.{milli:03d}Z"


def to_epoch_us(moment: datetime) -> int:
    """A tz-aware datetime -> integer epoch microseconds (exact, unlike float timestamps)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {moment!r}")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _chat_seed(chat_id: int, stream: int) -> int:
    """Seed of one of a chat's random streams: 1 builds version 1, 2 advances it to version 2,
    3 places version 2 in its day. Day-level streams are seeded with strings, so never collide."""
    return chat_id * 8 + stream


def _day_start_ms(ordinal: int) -> int:
    return (ordinal - _EPOCH_ORDINAL) * DAY_MS


def _check_chats_per_day(chats_per_day: int) -> None:
    if not 0 <= chats_per_day <= MAX_CHATS_PER_DAY:
        raise ValueError(
            f"chats_per_day must be within 0..{MAX_CHATS_PER_DAY}, got {chats_per_day}"
        )


# The rhythm of the week, in local time. Each hour profile is the share of a day's chats that
# begin in each local hour (normalized below); weekday volumes average 1 over a week.
_WEEKDAY_HOURS = (
    1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.0, 2.2, 4.2, 6.2, 7.2, 7.4,
    6.6, 7.0, 7.0, 6.4, 5.6, 4.6, 3.6, 3.0, 2.6, 2.2, 1.8, 1.4,
)  # fmt: skip
_WEEKEND_HOURS = (
    1.2, 0.8, 0.5, 0.4, 0.3, 0.3, 0.5, 0.8, 1.4, 2.2, 3.0, 3.6,
    3.8, 3.8, 3.6, 3.4, 3.2, 3.0, 2.8, 2.6, 2.4, 2.1, 1.8, 1.5,
)  # fmt: skip
_WEEKDAY_SHARE = tuple(weight / sum(_WEEKDAY_HOURS) for weight in _WEEKDAY_HOURS)
_WEEKEND_SHARE = tuple(weight / sum(_WEEKEND_HOURS) for weight in _WEEKEND_HOURS)
_WEEKDAY_WEIGHT = (1.2, 1.12, 1.08, 1.05, 0.98, 0.62, 0.48)  # Monday to Sunday
_WEEKDAY_VOLUME = tuple(weight * 7 / sum(_WEEKDAY_WEIGHT) for weight in _WEEKDAY_WEIGHT)
_NOISE = 0.07  # day-to-day spread of volume (lognormal, mean 1)
_SWELL, _SWELL_DAYS = 0.1, 91  # a slow wave of +-10% over a quarter


@lru_cache(maxsize=1024)
def _volume(local_day: date) -> float:
    """A local day's volume relative to the average day: its weekday, the swell, its noise."""
    rng = random.Random(f"volume {local_day.isoformat()}")
    swell = 1 + _SWELL * math.sin(2 * math.pi * local_day.toordinal() / _SWELL_DAYS)
    noise = rng.lognormvariate(-(_NOISE**2) / 2, _NOISE)
    return _WEEKDAY_VOLUME[local_day.weekday()] * swell * noise


class _BadAfternoon(NamedTuple):
    weekday: int  # 0 is Monday
    first_hour: int
    hours: int
    strain: float  # how many times longer queue waits are


@lru_cache(maxsize=256)
def _bad_afternoon(iso_year: int, iso_week: int) -> _BadAfternoon:
    """The week's bad afternoon: a weekday, starting between 12:00 and 14:00 local time."""
    rng = random.Random(f"bad afternoon {iso_year}-W{iso_week:02d}")
    return _BadAfternoon(
        rng.randrange(5), rng.randint(12, 14), rng.randint(2, 4), rng.uniform(4, 8)
    )


def _strain(local: datetime) -> float:
    """How much longer than usual queue waits are in this local hour: the bad afternoon's
    strain while it lasts, then half and a quarter of it while the backlog clears."""
    iso_year, iso_week, iso_weekday = local.isocalendar()
    bad = _bad_afternoon(iso_year, iso_week)
    since = local.hour - bad.first_hour
    if iso_weekday - 1 != bad.weekday or not 0 <= since < bad.hours + 2:
        return 1.0
    clearing = max(0, since - bad.hours + 1)
    return 1 + (bad.strain - 1) / 2**clearing


class _Day(NamedTuple):
    """A UTC day's shape: how many chats begin by the end of each hour, and the strain then."""

    ordinal: int
    start_ms: int
    ends: tuple[int, ...]  # ends[h]: chats created before the end of UTC hour h
    strain: tuple[float, ...]

    @property
    def total(self) -> int:
        return self.ends[-1]


@lru_cache(maxsize=1024)
def _day(ordinal: int, chats_per_day: int, timezone: str, seasonal: bool) -> _Day:
    zone = ZoneInfo(timezone)
    start_ms = _day_start_ms(ordinal)
    rounding = random.Random(f"rounding {ordinal}")  # unbiased whole counts per hour
    counts: list[int] = []
    strain: list[float] = []
    for hour in range(24):
        local = (_EPOCH + timedelta(milliseconds=start_ms + hour * HOUR_MS)).astimezone(zone)
        strain.append(_strain(local))
        if seasonal:
            shares = _WEEKEND_SHARE if local.weekday() >= 5 else _WEEKDAY_SHARE
            share = shares[local.hour]
            counts.append(int(chats_per_day * _volume(local.date()) * share + rounding.random()))
        else:
            counts.append(chats_per_day * (hour + 1) // 24 - chats_per_day * hour // 24)
    return _Day(ordinal, start_ms, tuple(accumulate(counts)), tuple(strain))


@lru_cache(maxsize=64)
def _late(ordinal: int, total: int) -> tuple[tuple[int, ...], ...]:
    """Indices of a day's chats that get a second version, by days later (1, 2, ...)."""
    rng = random.Random(f"late {ordinal}")
    chosen = rng.sample(range(total), round(total * REOPEN_SHARE))
    bounds = [0, *(round(len(chosen) * share) for share in accumulate(LATE_SHARES))]
    return tuple(tuple(sorted(chosen[low:high])) for low, high in pairwise(bounds))


def _wait_ms(rng: random.Random, queue: int, strain: float) -> int:
    """A queue wait: exponential around the queue's mean stretched by `strain`, at most
    MAX_WAIT_MS, plus under a second."""
    mean_wait_ms = _QUEUES[queue].mean_wait * 1000 * strain
    return min(int(rng.expovariate(1 / mean_wait_ms)), MAX_WAIT_MS) + rng.randrange(1000)


def _talk_ms(rng: random.Random) -> int:
    """How long a conversation with an agent lasts, at most MAX_TALK_MS."""
    return 30_000 + min(int(rng.expovariate(1 / 420_000)), MAX_TALK_MS - 30_000)


def _timeline(rng: random.Random, placed: int, reopened: bool, strain: float) -> _Timeline:
    """Draw queue, status and instants first, so a key costs only a few random numbers.

    The chat starts at `placed` unless version 1 would then end after its day (it starts
    earlier then); `strain` stretches the wait (and the patience of those who abandon)."""
    queue = _QUEUE.pick(rng)
    if reopened:
        status = _REOPENED_STATUS.pick(rng)
    else:
        status = (_STRAINED_STATUS if strain >= 2 else _STATUS).pick(rng)
    va_ms = rng.randrange(15_000, 180_000) if rng.random() < 0.35 else 0
    queue_ms = _wait_ms(rng, queue, strain)
    talk_ms = _talk_ms(rng)
    assigned: int | None = None
    ends: int | None = None
    if status == "queued":
        updated = va_ms + queue_ms
    elif status == "assigned":
        assigned = va_ms + queue_ms
        updated = assigned + talk_ms // 2
    elif status == "finished":
        assigned = va_ms + queue_ms
        ends = updated = assigned + talk_ms
    elif status == "no_response":
        assigned = va_ms + queue_ms
        ends = updated = assigned + 300_000
    elif status == "canceled":
        ends = updated = va_ms + queue_ms
    else:  # failed
        ends = updated = va_ms + min(queue_ms, 120_000)
    fits = placed + updated < (placed // DAY_MS + 1) * DAY_MS
    created = placed if fits else placed - updated  # then it ends about when it would start
    return _Timeline(
        status=status,
        queue=queue,
        strain=strain,
        created=created,
        queue_start=created + va_ms,
        assigned=None if assigned is None else created + assigned,
        ends=None if ends is None else created + ends,
        updated=created + updated,
    )


def _v1_key(day: _Day, index: int, reopened: bool) -> ChatVersionKey:
    """Key of version 1 of chat `index` of the day: its hour from the day's shape, its moment
    within the hour from its id."""
    chat_id = day.ordinal * IDS_PER_DAY + index
    hour = bisect(day.ends, index)
    placed = day.start_ms + hour * HOUR_MS + _knuth(chat_id) % HOUR_MS
    rng = random.Random(_chat_seed(chat_id, 1))
    tl = _timeline(rng, placed, reopened, day.strain[hour])
    return ChatVersionKey(tl.updated, chat_id, 1, tl.created, reopened, tl.strain)


def _v2_key(created_on: _Day, index: int, lands_on: _Day) -> ChatVersionKey:
    """Key of the second version, landing in an hour drawn by the later day's volume."""
    first = _v1_key(created_on, index, True)
    rng = random.Random(_chat_seed(first.chat_id, 3))
    hour = bisect(lands_on.ends, rng.randrange(lands_on.total)) if lands_on.total else 12  # noon
    updated = lands_on.start_ms + hour * HOUR_MS + rng.randrange(HOUR_MS)
    return first._replace(updated_ms=updated, version=2)


def _day_keys(
    ordinal: int, chats_per_day: int, timezone: str, seasonal: bool
) -> list[ChatVersionKey]:
    """Every chat version whose updated_at falls on the given UTC day."""
    today = _day(ordinal, chats_per_day, timezone, seasonal)
    reopened = set().union(*_late(ordinal, today.total))
    keys = [_v1_key(today, i, i in reopened) for i in range(today.total)]
    for days_later in range(1, len(LATE_SHARES) + 1):
        earlier = _day(ordinal - days_later, chats_per_day, timezone, seasonal)
        late = _late(earlier.ordinal, earlier.total)[days_later - 1]
        keys.extend(_v2_key(earlier, i, today) for i in late)
    return keys


def chat_version_keys(
    start: datetime,
    end: datetime,
    chats_per_day: int = 48,
    *,
    timezone: str = "UTC",
    seasonal: bool = True,
) -> list[ChatVersionKey]:
    """Keys of all chat versions with updated_at in [start, end], sorted by (updated_at, id)."""
    _check_chats_per_day(chats_per_day)
    start_us, end_us = to_epoch_us(start), to_epoch_us(end)
    if start_us > end_us:
        return []
    first = start.astimezone(UTC).date().toordinal()
    last = end.astimezone(UTC).date().toordinal()
    keys: list[ChatVersionKey] = []
    for ordinal in range(first, last + 1):
        keys.extend(
            key
            for key in _day_keys(ordinal, chats_per_day, timezone, seasonal)
            if start_us <= key.updated_ms * 1000 <= end_us
        )
    keys.sort()
    return keys


def iter_chats_updated_between(
    start: datetime,
    end: datetime,
    chats_per_day: int = 48,
    *,
    timezone: str = "UTC",
    seasonal: bool = True,
) -> Iterator[dict[str, Any]]:
    """Like chats_updated_between but builds records lazily (memory stays flat)."""
    keys = chat_version_keys(start, end, chats_per_day, timezone=timezone, seasonal=seasonal)
    for key in keys:
        yield build_chat(key)


def chats_updated_between(
    start: datetime,
    end: datetime,
    chats_per_day: int = 48,
    *,
    timezone: str = "UTC",
    seasonal: bool = True,
) -> list[dict[str, Any]]:
    """Every chat version with updated_at in [start, end] (inclusive), by (updated_at, id)."""
    return list(
        iter_chats_updated_between(start, end, chats_per_day, timezone=timezone, seasonal=seasonal)
    )


def build_chat(key: ChatVersionKey) -> dict[str, Any]:
    """Build one chat version from its key alone (version 2 rebuilds version 1, then moves on)."""
    rng = random.Random(_chat_seed(key.chat_id, 1))
    tl = _timeline(rng, key.created_ms, key.reopened, key.strain)
    chat = _Chat(key.chat_id, rng, tl)
    if key.version == 2:
        chat.advance(random.Random(_chat_seed(key.chat_id, 2)), key.updated_ms)
    return chat.record


def _signed_url(rng: random.Random, kind: str, chat_id: int, ext: str, ms: int) -> str:
    """A link shaped like a pre-signed S3 URL (a secret-bearing value worth protecting)."""
    stamp = iso_ms(ms) or ""
    amz_date = stamp[:19].replace("-", "").replace(":", "") + "Z"
    return (
        f"{_CDN}/{kind}/{chat_id}/{rng.getrandbits(64):016x}.{ext}"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=AKIAEXAMPLE%2F{amz_date[:8]}%2Fus-east-1%2Fs3%2Faws4_request"
        f"&X-Amz-Date={amz_date}&X-Amz-Expires=604800&X-Amz-SignedHeaders=host"
        f"&X-Amz-Signature={rng.getrandbits(256):064x}"
    )


class _Chat:
    """Builds a version-1 record and, for reopened chats, advances it to version 2.

    Why a class: version 2 must extend version 1's legs, agents and lists, so the builder keeps
    the few facts (current leg, agent, menu) that the record alone only holds as strings.
    """

    def __init__(self, chat_id: int, rng: random.Random, tl: _Timeline) -> None:
        self.chat_id = chat_id
        self.tl = tl
        self.strain = tl.strain  # of the hour the chat is in now
        self.lang = _LANG.pick(rng)
        self.menu = tl.queue
        self.agents_used: set[int] = set()
        self.leg_start: int | None = None
        self.leg_agent: int | None = None
        self.leg_menu = self.menu
        self.first_msg: int | None = None
        self.end_ms = tl.ends if tl.ends is not None else tl.updated
        self.connected = tl.created  # when the end user (last) joined the chat
        status = tl.status
        has_agent = tl.assigned is not None
        va_index = rng.randrange(len(_VIRTUAL_AGENTS)) if tl.queue_start > tl.created else None
        end_user_id = rng.randrange(1, 60_000)
        show_menu = rng.random() < 0.85
        ticket = str(rng.randrange(100_000, 1_000_000)) if rng.random() < 0.7 else None
        rating = _RATING.pick(rng) if status == "finished" and rng.random() < 0.6 else None
        self.record: dict[str, Any] = {
            "id": chat_id,
            "lang": self.lang,
            "chat_type": _CHAT_TYPE.pick(rng),
            "status": status,
            "sub_status": None,
            "created_at": iso_ms(tl.created),
            "assigned_at": iso_ms(tl.assigned),
            "ends_at": iso_ms(tl.ends),
            "updated_at": iso_ms(tl.updated),
            "first_msg_sent_at": None,
            "last_msg_sent_at": None,
            "wait_duration": 0,
            "queue_duration": 0,
            "chat_duration": 0,
            "verified": rng.random() < 0.6,
            "rating": rating,
            "has_feedback": rating is not None and rng.random() < 0.3,
            "out_ticket_id": ticket,
            "out_ticket_url": (
                f"https://support.example.test/tickets/{ticket}"
                if ticket is not None and rng.random() < 0.8
                else None
            ),
            "finish_reason": None,
            "fail_reason": None,
            "message_count": 0,
            "average_response_time": 0,
            "longest_response_time": 0,
            "selected_menu": _selected_menu(self.menu, rng) if show_menu else None,
            "menu_path": _menu_object(self.menu) if show_menu else None,
            "agent_info": None,
            "end_user": _end_user(end_user_id),
            "photos": [],
            "videos": [],
            "transfers": [],
            "handle_durations": [],
            "queue_durations": [],
            "participants": [],
            "consumer_handle_durations": [],
            "consumer_event_durations": [],
            "virtual_agent": None if va_index is None else _virtual_agent(va_index),
            "virtual_agent_deflected_escalations": [],
            "virtual_agent_handle_durations": [],
            "offer_type": None,
            "offer_events": [],
        }
        rec = self.record
        self._set_outcome(rng, status)
        if va_index is not None:
            self._add_virtual_agent(rng, va_index)
        if status == "queued":
            rec["queue_duration"] = (tl.updated - tl.queue_start) // 1000
            self._add_waiting(tl.queue_start, tl.updated)
        else:
            answered_by = None
            if has_agent:
                answered_by = rng.randrange(len(_AGENTS))
                self._start_leg(answered_by, tl.assigned or 0, self.menu)
                rec["agent_info"] = _agent(answered_by)
            self._add_queue(rng, tl.queue_start, tl.assigned or tl.ends or 0, answered_by, None)
            rec["queue_duration"] = rec["queue_durations"][0]["queue_duration"]
            self._add_offers(rng, tl.queue_start, 1 if answered_by is None else rng.randint(1, 3))
        rec["wait_duration"] = rec["queue_duration"]
        if tl.assigned is not None:
            rec["chat_duration"] = ((tl.ends or tl.updated) - tl.assigned) // 1000
        if status in ("assigned", "finished"):
            for _ in range(_TRANSFER_COUNT.pick(rng)):
                hand_end = tl.ends if tl.ends is not None else tl.updated
                self._transfer(rng, hand_end)
        if status in ("finished", "no_response"):
            self._close_leg(rng, tl.ends or 0, "chat_finished" if status == "finished" else status)
        self._add_messages(rng, tl.created, tl.ends if tl.ends is not None else tl.updated)
        self._add_participants(rng, end_user_id)
        self._add_media(rng)
        if rating is not None:
            self._add_csat(rng, tl.ends or 0)

    def _set_outcome(self, rng: random.Random, status: str) -> None:
        """sub_status, finish_reason and fail_reason follow the status."""
        rec = self.record
        rec["status"] = status
        if status == "finished":
            rec["sub_status"] = _FINISHED_SUB_STATUS.pick(rng)
            rec["finish_reason"] = _FINISH_REASON.pick(rng)
            rec["fail_reason"] = None
        elif status == "failed":
            rec["sub_status"] = "Failed"
            rec["fail_reason"] = _FAIL_REASON.pick(rng)
        elif status == "no_response":
            rec["sub_status"] = "No response from end user"
            rec["fail_reason"] = "no_response"
        elif status == "canceled":
            rec["sub_status"] = "Abandoned in queue"
            rec["fail_reason"] = "nothing" if rng.random() < 0.5 else None

    def _reopen(self, rng: random.Random, gave_up: int, updated: int) -> int:
        """The customer who gave up at `gave_up` writes again shortly before `updated`: a new
        wait in the chat's own queue (an ordinary hour's), an agent, perhaps a transfer, and
        the chat finishes at `updated`. Returns when the agent answered."""
        self.strain = 1.0
        wait, talk = _wait_ms(rng, self.menu, self.strain), _talk_ms(rng)
        spare = updated - gave_up
        if wait + talk > spare // 2:  # gave up just before midnight, back just after
            wait, talk = wait * spare // (2 * (wait + talk)), talk * spare // (2 * (wait + talk))
        assigned = updated - talk
        requeued = assigned - wait
        self.connected = requeued
        agent = rng.randrange(len(_AGENTS))
        self.leg_menu = self.menu
        self._add_queue(rng, requeued, assigned, agent, None)
        self._add_offers(rng, requeued, rng.randint(1, 3))
        self._start_leg(agent, assigned, self.menu)
        self.record["agent_info"] = _agent(agent)
        self.record["assigned_at"] = iso_ms(assigned)
        if rng.random() < 0.35:
            self._transfer(rng, updated)
        self._close_leg(rng, updated, "chat_finished")
        return assigned

    def _add_virtual_agent(self, rng: random.Random, va_index: int) -> None:
        tl, rec = self.tl, self.record
        queue = _QUEUES[self.menu]
        count = rng.randint(1, 12)
        avg = rng.randint(1, 5)
        reason = "by_end_user_message" if rng.random() < 0.7 else "by_intent"
        rec["virtual_agent_handle_durations"].append(
            {
                "id": self._child_id(rng, "virtual_agent_handle_durations", 8_000, 1_000),
                "virtual_agent": _virtual_agent(va_index),
                "chat_duration": (tl.queue_start - tl.created) // 1000,
                "escalation_reason": reason,
                "response_count": count,
                "response_time_total": count * avg,
                "response_time_max": avg + rng.randrange(4),
                "response_time_avg": avg,
                "fallback_response_count": rng.randrange(3),
                "initiated_by": "end_user",
                "menu_path_id": queue.menu_id,
                "menu_path": queue.path,
                "lang": self.lang,
                "transfer": False,  # a boolean here, 0/1 in the other duration lists
                "transfer_id": None,
                "started_at": iso_ms(tl.created),
                "ended_at": iso_ms(tl.queue_start),
            }
        )
        rec["virtual_agent_deflected_escalations"].append(
            {
                "id": self._child_id(rng, "virtual_agent_deflected_escalations", 9_000, 1_000),
                "deflection": "after_hours" if rng.random() < 0.2 else "none",
                "escalation_reason": reason,
                "escalated_at": iso_ms(tl.queue_start),
                "menu_path_id": queue.menu_id,
                "menu_path": queue.path,
                "lang": self.lang,
                "virtual_agent": _virtual_agent(va_index),
            }
        )

    def _child_id(self, rng: random.Random, key: str, low: int, size: int) -> int:
        """Unique across all chats (chat id, then a slot), as a healthy tenant's data is; the
        vendor's own sample repeats child ids across chats, and the tests feed that case."""
        taken = {child["id"] for child in self.record[key]}
        while True:
            candidate = self.chat_id * 10_000 + low % 10_000 + rng.randrange(size)
            if candidate not in taken:
                return candidate

    def _add_queue(
        self,
        rng: random.Random,
        started: int,
        ended: int,
        agent: int | None,
        transfer_id: int | None,
    ) -> None:
        """A queue period in the current leg's queue. Its SLA event follows from the wait and
        the queue's targets: answered within the target time is in_sla, later not_in_sla; an
        abandon shorter than the threshold is excluded, a longer one not_in_sla; a chat that
        failed in the queue is excluded."""
        rec = self.record
        queue = _QUEUES[self.leg_menu]
        seconds = (ended - started) // 1000
        if agent is not None:
            event = "answered"
            sla = "in_sla" if seconds <= queue.target_time else "not_in_sla"
        elif rec["status"] == "failed":
            # A chat that expired in the queue timed out there: neither answered nor abandoned.
            event = "expired" if rec["fail_reason"] == "expired" else "failed"
            sla = "excluded"
        else:
            event = "abandoned"
            sla = "excluded" if seconds < queue.abandon_threshold else "not_in_sla"
        rec["queue_durations"].append(
            {
                "id": self._child_id(rng, "queue_durations", 41_000, 2_000),
                "agent_id": None if agent is None else _AGENTS[agent][0],
                "queue_duration": seconds,
                "menu_path_id": queue.menu_id,
                "menu_path": queue.path,
                "lang": self.lang,
                "transfer": 0 if transfer_id is None else 1,
                "transfer_id": transfer_id,
                "transfer_cold": 0 if transfer_id is None else rng.randrange(2),
                "started_at": iso_ms(started),
                "ended_at": iso_ms(ended),
                "service_level_abandon_time_threshold": queue.abandon_threshold,
                "service_level_event": sla,
                "service_level_target_percent": queue.target_percent,
                "service_level_target_time": queue.target_time,
                "event": event,
            }
        )

    def _add_waiting(self, started: int, now: int) -> None:
        """The queue segment of a chat still waiting: no end, no outcome and no SLA verdict
        yet, as UJET sends it until an agent accepts or the consumer leaves. (No draw from the
        chat's random numbers, so the chat's other values stay as they were.)"""
        queue = _QUEUES[self.leg_menu]
        self.record["queue_durations"].append(
            {
                "id": self.chat_id * 10_000 + 1_000,
                "agent_id": None,
                "queue_duration": (now - started) // 1000,
                "menu_path_id": queue.menu_id,
                "menu_path": queue.path,
                "lang": self.lang,
                "transfer": 0,
                "transfer_id": None,
                "transfer_cold": 0,
                "started_at": iso_ms(started),
                "ended_at": None,
                "service_level_abandon_time_threshold": queue.abandon_threshold,
                "service_level_event": None,
                "service_level_target_percent": queue.target_percent,
                "service_level_target_time": queue.target_time,
                "event": None,
            }
        )

    def _add_offers(self, rng: random.Random, start: int, count: int) -> None:
        rec = self.record
        rec["offer_type"] = "cascade" if rng.random() < 0.85 else "broadcast"
        for group in range(1, count + 1):
            rec["offer_events"].append(
                {"casting_time": iso_ms(start + group * 1000), "group": f"Group {group}"}
            )

    def _start_leg(self, agent: int, started: int, menu: int) -> None:
        self.leg_agent, self.leg_start, self.leg_menu = agent, started, menu
        self.agents_used.add(agent)

    def _close_leg(
        self, rng: random.Random, ended: int, event: str, transfer_id: int | None = None
    ) -> None:
        """Record the current agent's handling period as a handle_durations item."""
        rec = self.record
        agent = self.leg_agent if self.leg_agent is not None else 0
        started = self.leg_start if self.leg_start is not None else ended
        queue = _QUEUES[self.leg_menu]
        count = rng.randint(1, 15)
        avg = rng.randint(5, 40)
        rec["handle_durations"].append(
            {
                "id": self._child_id(rng, "handle_durations", 30_000, 2_000),
                "agent_id": _AGENTS[agent][0],
                "acw_duration": rng.randrange(120) if event == "chat_finished" else 0,
                "chat_duration": (ended - started) // 1000,
                "wait_duration": 0,
                "menu_path_id": queue.menu_id,
                "menu_path": queue.path,  # a string here, an object at the top level
                "lang": self.lang,
                "transfer": 0 if transfer_id is None else 1,
                "transfer_id": transfer_id,
                "started_at": iso_ms(started),
                "ended_at": iso_ms(ended),
                "event": event,
                "response_count": count,
                "response_time_total": count * avg + rng.randrange(count),
                "response_time_max": avg + rng.randrange(30),
                "response_time_avg": avg,
                "assigned_connection_duration": rng.randrange(1, 15),
            }
        )
        self._refresh_response_times()

    def _refresh_response_times(self) -> None:
        handles = self.record["handle_durations"]
        if handles:
            total = sum(h["response_time_total"] for h in handles)
            count = sum(h["response_count"] for h in handles)
            self.record["average_response_time"] = total // count
            self.record["longest_response_time"] = max(h["response_time_max"] for h in handles)

    def _transfer(self, rng: random.Random, hand_end: int, after: int | None = None) -> None:
        """Hand the chat to another agent midway through the current leg (its part after
        `after`, when version 1 already showed the leg going on until then)."""
        rec = self.record
        start = self.leg_start if self.leg_start is not None else hand_end
        if after is not None:
            start = max(start, after)
        span = hand_end - start
        if span < 20_000 or len(rec["transfers"]) >= 2:
            return
        at = start + span // 3 + rng.randrange(span // 3)
        to_agent = rng.randrange(len(_AGENTS))
        while to_agent in self.agents_used:
            to_agent = rng.randrange(len(_AGENTS))
        to_menu = self.leg_menu if rng.random() < 0.5 else rng.randrange(len(_QUEUES))
        mean_wait_ms = _QUEUES[to_menu].mean_wait * 1000 * self.strain
        gap = 1000 + min(int(rng.expovariate(1 / mean_wait_ms)), span // 6, MAX_WAIT_MS)
        transfer_id = self._child_id(rng, "transfers", 7_000, 1_000)
        rec["transfers"].append(
            {
                "id": transfer_id,
                "status": "transferred",
                "fail_reason": "nothing",
                "created_at": iso_ms(at),
                "from_menu": _menu_object(self.leg_menu),
                "to_menu": _menu_object(to_menu),
                "from_agent": _agent(self.leg_agent if self.leg_agent is not None else 0),
                "to_agent": _agent(to_agent),
            }
        )
        self._close_leg(rng, at, "transferred", transfer_id)
        self.leg_menu = to_menu
        self._add_queue(rng, at, at + gap, to_agent, transfer_id)
        self._start_leg(to_agent, at + gap, to_menu)
        rec["agent_info"] = _agent(to_agent)

    def _add_messages(self, rng: random.Random, first_possible: int, last_possible: int) -> None:
        """Message counts and first/last message instants within the chat's lifetime."""
        rec = self.record
        status = rec["status"]
        if status in ("queued", "canceled", "failed"):
            extra = rng.randrange(3)
        else:
            extra = rng.randint(2, 40)
        if extra == 0:
            return
        span = max(1, last_possible - first_possible)
        if self.first_msg is None:
            self.first_msg = first_possible + rng.randrange(min(span, 5000))
            rec["first_msg_sent_at"] = iso_ms(self.first_msg)
        last = max(self.first_msg, last_possible - rng.randrange(min(span, 5000)))
        rec["last_msg_sent_at"] = iso_ms(last)
        rec["message_count"] += extra
        if rec["handle_durations"]:
            handles = rec["handle_durations"]
            rec["consumer_handle_durations"] = [
                {
                    "id": self.chat_id * 10_000 + 6_000,
                    "chat_duration": sum(h["chat_duration"] for h in handles),
                    "message_count": rec["message_count"],
                    "response_count": rec["message_count"] // 2,
                    "response_time_total": rec["message_count"] * 9,
                    "response_time_max": rec["longest_response_time"],
                    "response_time_avg": 9,
                    "started_at": handles[0]["started_at"],
                    "ended_at": handles[-1]["ended_at"],
                }
            ]

    def _add_participants(self, rng: random.Random, end_user_id: int) -> None:
        """The end user and, when reached, up to two agents (the vendor often sends [])."""
        rec = self.record
        if rng.random() < 0.1:
            return
        open_chat = rec["ends_at"] is None
        rec["participants"].append(
            {
                "id": self._child_id(rng, "participants", 4_000, 1_000),
                "type": "end_user",
                "status": "waiting" if rec["status"] == "queued" else "finished",
                "call_id": None,
                "user_id": None,
                "end_user_id": end_user_id,
                "call_duration": (self.end_ms - self.connected) // 1000,
                "hold_duration": 0,
                "connected_at": iso_ms(self.connected),
                "ended_at": rec["ends_at"],
                "fail_reason": "nothing",
            }
        )
        if open_chat and rec["status"] != "queued":
            rec["participants"][0]["status"] = "connected"
        for handle in rec["handle_durations"][:2]:
            self._add_agent_participant(rng, handle["agent_id"], handle, "finished")
        if open_chat and self.leg_agent is not None and len(rec["participants"]) < 3:
            current = {"started_at": iso_ms(self.leg_start), "ended_at": None, "chat_duration": 0}
            self._add_agent_participant(rng, _AGENTS[self.leg_agent][0], current, "connected")

    def _add_agent_participant(
        self, rng: random.Random, agent_id: int, leg: dict[str, Any], status: str
    ) -> None:
        self.record["participants"].append(
            {
                "id": self._child_id(rng, "participants", 4_000, 1_000),
                "type": "agent",
                "status": status,
                "call_id": None,
                "user_id": agent_id,
                "end_user_id": None,
                "call_duration": leg["chat_duration"],
                "hold_duration": 0,
                "connected_at": leg["started_at"],
                "ended_at": leg["ended_at"],
                "fail_reason": "nothing",
            }
        )

    def _add_media(self, rng: random.Random) -> None:
        """Customer uploads behind signed links."""
        rec, when = self.record, self.tl.updated
        for _ in range(_PHOTO_COUNT.pick(rng)):
            rec["photos"].append(
                {
                    "id": rng.randrange(100_000, 10_000_000),
                    "photo_type": "photo" if rng.random() < 0.8 else "screenshot",
                    "url": _signed_url(rng, "photos", self.chat_id, "jpg", when),
                }
            )
        for _ in range(_VIDEO_COUNT.pick(rng)):
            rec["videos"].append(
                {
                    "id": rng.randrange(100_000, 10_000_000),
                    "url": _signed_url(rng, "videos", self.chat_id, "mp4", when),
                }
            )

    def _add_csat(self, rng: random.Random, ends: int) -> None:
        """A CSAT survey event in the last seconds of a rated chat."""
        queue = _QUEUES[self.leg_menu]
        duration = rng.randint(2, 9)
        self.record["consumer_event_durations"].append(
            {
                "id": self._child_id(rng, "consumer_event_durations", 5_000, 1_000),
                "type": "csat",
                "event": "finished",
                "duration": duration,
                "menu_path_id": queue.menu_id,
                "menu_path": queue.path,
                "lang": self.lang,
                "started_at": iso_ms(ends - duration * 1000),
                "ended_at": iso_ms(ends),
            }
        )

    def advance(self, rng: random.Random, updated: int) -> None:
        """Turn the open version 1 into version 2, updated at `updated` on a later day: later
        status, changed children, a rating.

        Version 1 is a snapshot in the middle of the chat and only version 2's writing is late,
        so nothing waits or talks for days: an assigned chat ends minutes later (the rest of
        its conversation, or the customer's five-minute silence); a queued customer gives up
        within the hour (waits are memoryless: the rest is drawn like a fresh wait) and either
        stays gone or comes back shortly before `updated`, queues again and is answered."""
        rec, tl = self.record, self.tl
        rec["updated_at"] = iso_ms(updated)
        if tl.status == "assigned":
            status = "finished" if rng.random() < 0.85 else "no_response"
            assigned = tl.assigned or tl.created
            rest = tl.updated - assigned if status == "finished" else 300_000
            ended = min(tl.updated + rest, updated)
            if status == "finished" and rng.random() < 0.35:
                self._transfer(rng, ended, after=tl.updated)
            self._close_leg(rng, ended, "chat_finished" if status == "finished" else status)
        else:
            waited = tl.updated - tl.queue_start
            rest = min(_wait_ms(rng, self.menu, self.strain), max(0, MAX_WAIT_MS - waited))
            gave_up = min(tl.updated + rest, updated)
            rec["queue_durations"].pop()  # the segment that was waiting ends here
            self._add_queue(rng, tl.queue_start, gave_up, None, None)
            if rng.random() < 0.6:
                status = "finished"
                ended = updated
                assigned = self._reopen(rng, gave_up, updated)
            else:
                status = "canceled"
                ended = gave_up
                assigned = None
                self._add_offers(rng, tl.queue_start, 1)
        rec["ends_at"] = iso_ms(ended)
        self.end_ms = ended
        self._set_outcome(rng, status)
        if rec["queue_durations"]:
            rec["queue_duration"] = rec["wait_duration"] = rec["queue_durations"][0][
                "queue_duration"
            ]
        if assigned is not None:
            rec["chat_duration"] = (ended - assigned) // 1000
        if status == "finished" and rng.random() < 0.7:
            rec["rating"] = _RATING.pick(rng)
            rec["has_feedback"] = rng.random() < 0.3
            self._add_csat(rng, ended)
        self._add_messages(rng, tl.created, ended)
        end_user_id = rec["end_user"]["id"]
        rec["participants"] = []
        self._add_participants(rng, end_user_id)
        if rng.random() < 0.35:
            if rec["photos"]:
                rec["photos"].pop()
            elif len(rec["offer_events"]) > 1:
                rec["offer_events"].pop()
