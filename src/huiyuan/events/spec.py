"""The Segment/RudderStack HTTP tracking spec as implemented: request bodies (gzip, size limits),
messages, timestamp correction, and the rows a request becomes. Pure: no database, no HTTP framework.

This is the ingestion hot path (tens of thousands of messages a second), so it works on the plain
dicts ``orjson`` returns rather than on pydantic models, and hands the store rows that are already
tuples in column order, with JSON serialised and times encoded for the database at hand.

What happens to a message:

* it breaks the **spec** (no ``userId``/``anonymousId``, a track without ``event``, an alias without
  ``previousId``, a timestamp that is not ISO 8601, ids longer than 200 characters, properties that
  are not an object …): stored in the quarantine with ``rule: "spec"`` — it cannot join the main
  stream, and nothing is silently dropped;
* it breaks the brand's **plan** (``events.plan``): stored in the main stream with its violations
  (``flag``) or in the quarantine (``quarantine``);
* otherwise it joins the main stream.

Requests that are not JSON, not gzip when they say so, above 500 KB, or with a message above 32 KB are
refused whole with a 400: nothing of them is stored, and a client will not retry them.
"""

from __future__ import annotations

import hashlib
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import orjson

from huiyuan.events.models import ID_LENGTH, NAME_LENGTH
from huiyuan.events.plan import CompiledPlan, Violation, check, unplanned_violation
from huiyuan.kit.errors import AppError

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MESSAGE_KINDS = ("identify", "track", "page", "screen", "group", "alias")
PLANNED_KINDS = frozenset({"track", "page", "screen"})

EVENT_COLUMNS = (
    "brand_id",
    "source_id",
    "message_id",
    "dedup_ms",
    "type",
    "event",
    "user_id",
    "anonymous_id",
    "previous_id",
    "group_id",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "properties",
    "traits",
    "context",
    "external_ids",
    "extra",
    "violations",
)
JSON_EVENT_COLUMNS = frozenset({"properties", "traits", "context", "external_ids", "extra", "violations"})
QUARANTINE_COLUMNS = (
    "brand_id",
    "source_id",
    "message_id",
    "type",
    "event",
    "received_at",
    "violations",
    "message",
)
JSON_QUARANTINE_COLUMNS = frozenset({"violations", "message"})

# Top-level fields that have columns of their own; everything else goes to ``extra``.
_MODELLED = frozenset(
    {
        "type",
        "messageId",
        "userId",
        "anonymousId",
        "previousId",
        "groupId",
        "event",
        "name",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "receivedAt",
        "properties",
        "traits",
        "context",
        "writeKey",
    }
)


class TrackingError(AppError):
    """Errors of the tracking API, answered as ``{"code": …, "message": …}`` like Segment's."""

    status = 400
    code = "invalid-request"
    title = "The request is not valid"


class InvalidJson(TrackingError):
    code = "invalid-json"
    title = "The body is not valid JSON"


class InvalidEncoding(TrackingError):
    code = "invalid-encoding"
    title = "The body is not valid gzip"


class BatchTooLarge(TrackingError):
    code = "batch-too-large"
    title = "The request is larger than 500 KB"


class MessageTooLarge(TrackingError):
    code = "message-too-large"
    title = "A message is larger than 32 KB"


def decode_body(raw: bytes, content_encoding: str | None = None) -> tuple[dict[str, Any], int]:
    """The JSON object of a request body (gzip when the header says so) and its size in bytes
    (uncompressed), within the batch limit."""
    if content_encoding and content_encoding.strip().lower() == "gzip":
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            # Never inflate more than the limit allows: a small bomb must not become a big allocation.
            data = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
        except zlib.error:
            raise InvalidEncoding("Content-Encoding is gzip but the body is not gzip data.")
        if len(data) > MAX_BATCH_BYTES or inflater.unconsumed_tail:
            raise BatchTooLarge(f"Requests are limited to {MAX_BATCH_BYTES} bytes (uncompressed).")
    elif content_encoding and content_encoding.strip().lower() not in ("identity", ""):
        raise InvalidEncoding(f"Content-Encoding {content_encoding!r} is not supported; use gzip.")
    else:
        data = raw
    if len(data) > MAX_BATCH_BYTES:
        raise BatchTooLarge(f"Requests are limited to {MAX_BATCH_BYTES} bytes.")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"The body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        raise InvalidJson("The body must be a JSON object.")
    return body, len(data)


@dataclass
class Envelope:
    """The messages of one request and what the request says about all of them."""

    messages: list[dict[str, Any]]
    sent_at: Any = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None


def envelope(body: dict[str, Any], kind: str, *, body_bytes: int) -> Envelope:
    """Split a request body into messages: ``kind`` is ``batch`` or the single message's type."""
    if kind == "batch":
        batch = body.get("batch")
        if not isinstance(batch, list):
            raise TrackingError("A batch needs a 'batch' array of messages.")
        for i, message in enumerate(batch):
            if not isinstance(message, dict):
                raise TrackingError(f"batch[{i}] is not an object.")
        context = body.get("context")
        integrations = body.get("integrations")
        env = Envelope(
            batch,
            body.get("sentAt"),
            context if isinstance(context, dict) and context else None,
            integrations if isinstance(integrations, dict) and integrations else None,
        )
    else:
        message = dict(body)
        message["type"] = kind
        env = Envelope([message], message.get("sentAt"))
    # A body within one message's limit cannot hold a message above it.
    if body_bytes > MAX_MESSAGE_BYTES:
        for i, message in enumerate(env.messages):
            size = len(orjson.dumps(message))
            if size > MAX_MESSAGE_BYTES:
                raise MessageTooLarge(
                    f"Message {i} is {size} bytes; messages are limited to {MAX_MESSAGE_BYTES} bytes.",
                    index=i,
                )
    return env


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as an aware datetime (naive times are UTC); ``ValueError`` if unreadable."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("not a string")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def corrected_time(received_at: datetime, sent_at: datetime | None, timestamp: datetime | None) -> datetime:
    """Segment's clock-skew correction: ``receivedAt − (sentAt − timestamp)`` when both were sent."""
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp.astimezone(UTC)
    return (received_at - (sent_at - timestamp)).astimezone(UTC)


def sqlite_time(value: datetime) -> str:
    """What SQLAlchemy's SQLite ``DATETIME`` stores for a UTC time (naive, always microseconds)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # Faster than ``isoformat`` (which formats the offset only to have it cut off) or an f-string.
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)
_MILLISECOND = timedelta(milliseconds=1)


def epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch, rounded down (exactly: no float on the way)."""
    return (value - _EPOCH) // _MILLISECOND


class SqliteTimes:
    """SQLite's text of times (``sqlite_time``), the part up to the second formatted once per second:
    the messages of a request share a few seconds, and formatting every field of every time was 8 %
    of the server's time under the GIL (docs/events-performance.md). One per request (``Preparer``),
    so it never grows old.

    ``parts`` reads the shape of time client libraries send (``2026-05-01T12:00:00.123Z``,
    ``…00.123456+00:00``, ``…+08:00``) as epoch seconds and microseconds without a ``datetime``, and
    ``text`` writes them: the message's time and its corrected time are then integer additions.
    Anything else is left to ``parse_time``. (No library does this: ``datetime.fromisoformat`` and
    formatting are the work being saved, and the shape is checked here before any of it is trusted.)
    """

    def __init__(self) -> None:
        self._local: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" → its seconds since the epoch
        self._prefixes: dict[int, str] = {}  # seconds since the epoch → "YYYY-MM-DD HH:MM:SS."

    def __call__(self, value: datetime) -> str:
        """``sqlite_time`` of an aware time."""
        return self.text(*divmod((value - _EPOCH) // _MICROSECOND, 1_000_000))

    def parts(self, raw: Any) -> tuple[int, int] | None:
        """``(seconds since the epoch, microseconds)`` of ``raw`` if it has the libraries' shape: a
        date and time to the second, no fraction or one of 3 or 6 digits, ``Z`` or ``±HH:MM``."""
        if raw.__class__ is not str:
            return None
        end = len(raw)
        if end < 20 or raw[10] != "T":
            return None
        if raw[-1] == "Z":
            end -= 1
            offset = 0
        elif raw[-3] == ":" and raw[-6] in "+-":
            hours, minutes = raw[-5:-3], raw[-2:]
            if not (hours.isascii() and hours.isdigit() and minutes.isascii() and minutes.isdigit()):
                return None
            if int(hours) > 23 or int(minutes) > 59:
                return None
            offset = int(hours) * 3600 + int(minutes) * 60
            if raw[-6] == "-":
                offset = -offset
            end -= 6
        else:
            return None
        micro = 0
        if end != 19:
            digits = raw[20:end]
            if raw[19] != "." or len(digits) not in (3, 6) or not (digits.isascii() and digits.isdigit()):
                return None
            micro = int(digits) * 1000 if len(digits) == 3 else int(digits)
        key = raw[:19]
        local = self._local.get(key)
        if local is None:
            if key[4] != "-" or key[7] != "-" or key[13] != ":" or key[16] != ":":
                return None
            try:
                parsed = datetime.fromisoformat(key)  # checks the date and the time of day
            except ValueError:
                return None
            local = self._local[key] = (parsed - _NAIVE_EPOCH) // _SECOND
        return local - offset, micro

    def text(self, seconds: int, micro: int) -> str:
        """``sqlite_time`` of the UTC time ``seconds`` (since the epoch) and ``micro``; ``OverflowError``
        outside the years 1–9999."""
        prefix = self._prefixes.get(seconds)
        if prefix is None:
            prefix = self._prefixes[seconds] = sqlite_time(_EPOCH + timedelta(seconds=seconds))[:20]
        return prefix + "%06d" % micro  # noqa: UP031


def _same(value: datetime) -> datetime:
    return value


def time_encoder(dialect: str) -> Callable[[datetime], Any]:
    """How times are bound on ``dialect``: SQLite's text (``SqliteTimes``, a new one per call), else as is."""
    return SqliteTimes() if dialect == "sqlite" else _same


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _message_id(value: Any) -> str:
    if value is None or value == "":
        return uuid.uuid4().hex
    text = value if isinstance(value, str) else str(value)
    # Longer ids still de-duplicate: they are kept as their hash.
    return text if len(text) <= ID_LENGTH else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class SpecError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.violation: Violation = {"property": field_name, "rule": "spec", "message": message}


def _id(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SpecError(key, f"{key} must be a string")
    text = value if isinstance(value, str) else str(value)
    if len(text) > ID_LENGTH:
        raise SpecError(key, f"{key} is longer than {ID_LENGTH} characters")
    return text


def _object(message: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecError(key, f"{key} must be an object")
    return value


def _external_ids(context: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    if not context:
        return None
    value = context.get("externalIds")
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(x, dict) and isinstance(x.get("type"), str) and isinstance(x.get("id"), str | int)
        for x in value
    ):
        raise SpecError("context.externalIds", "externalIds must be a list of {id, type, …} objects")
    return value or None


@dataclass
class Prepared:
    """Rows of one request, in column order, and what the request taught about the plan."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    quarantined: list[tuple[Any, ...]] = field(default_factory=list)
    # (kind, name) → [messages, sample properties]
    unplanned: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    # (day, kind, event, property, rule) → [messages, of which quarantined]
    stats: dict[tuple[date, str, str, str, str], list[int]] = field(default_factory=dict)
    flagged: int = 0

    @property
    def received(self) -> int:
        return len(self.events) + len(self.quarantined)


class Preparer:
    """Turns the messages of one source into rows, checked against the brand's compiled plan.

    ``backfill``: the messages are history being imported (the demo): each is received at its own
    timestamp instead of now. ``dedup``: the source's de-duplication key (``models.DEDUP_KEYS``).
    """

    KINDS: ClassVar[frozenset[str]] = frozenset(MESSAGE_KINDS)

    def __init__(
        self,
        *,
        brand_id: int,
        source_id: int,
        plan: CompiledPlan,
        dialect: str,
        received_at: datetime,
        backfill: bool = False,
        dedup: str = "message_id",
    ) -> None:
        self.brand_id = brand_id
        self.source_id = source_id
        self.plan = plan
        self.encode_time = time_encoder(dialect)
        # SQLite: the libraries' times read and written without ``datetime`` (``SqliteTimes.parts``).
        self.texts = self.encode_time if isinstance(self.encode_time, SqliteTimes) else None
        self.received_at = received_at
        self.received_value = self.encode_time(received_at)
        self.received_ms = epoch_ms(received_at)
        self.backfill = backfill
        self.by_time = dedup == "message_id_and_timestamp"
        self.quarantine_mode = plan.violation_mode == "quarantine"
        # The last sentAt seen (one per batch, usually): its time, its stored value, and the clock
        # correction it implies (receivedAt − sentAt, added to each timestamp).
        self._sent_raw: Any = None
        self._sent: tuple[datetime | None, Any, timedelta | None] = (None, None, None)
        self.unplanned_is_violation = plan.unplanned_policy == "violation"
        self.out = Prepared()

    def add(self, env: Envelope) -> Prepared:
        for message in env.messages:
            self.message(message, env)
        return self.out

    def message(self, message: dict[str, Any], env: Envelope) -> None:
        if "writeKey" in message:  # never store a key
            message = {k: v for k, v in message.items() if k != "writeKey"}
        context = message.get("context")
        if env.context is not None:
            context = {**env.context, **context} if isinstance(context, dict) else env.context
            message["context"] = context
        if env.integrations is not None and "integrations" not in message:
            message["integrations"] = env.integrations
        if env.sent_at is not None and "sentAt" not in message:
            message["sentAt"] = env.sent_at
        try:
            self._row(message)
        except SpecError as exc:
            self._quarantine(message, [exc.violation], kind=None, name=None)

    def _row(self, message: dict[str, Any]) -> None:
        # The hot path: one call per message, written for the common shape (ids that are short
        # strings, objects that are dicts, a planned event that conforms) with the rules' own
        # functions (``_id``, ``_object``, ``plan.check``) for everything else.
        get = message.get
        kind = get("type")
        if kind not in self.KINDS:
            raise SpecError("type", f"type must be one of {', '.join(MESSAGE_KINDS)}")
        user_id = get("userId")
        if user_id is not None and (user_id.__class__ is not str or len(user_id) > ID_LENGTH or not user_id):
            user_id = _id(message, "userId")
        anonymous_id = get("anonymousId")
        if anonymous_id is not None and (
            anonymous_id.__class__ is not str or len(anonymous_id) > ID_LENGTH or not anonymous_id
        ):
            anonymous_id = _id(message, "anonymousId")
        previous_id = group_id = None
        name = None
        if kind == "alias":
            previous_id = _id(message, "previousId")
            if user_id is None or previous_id is None:
                raise SpecError("previousId" if user_id else "userId", "alias needs userId and previousId")
        elif user_id is None and anonymous_id is None:
            raise SpecError("userId", "userId or anonymousId is required")
        if kind == "track":
            name = get("event")
            if name.__class__ is not str or len(name) > NAME_LENGTH or not name.strip():
                raise SpecError("event", f"track needs an event name of 1 to {NAME_LENGTH} characters")
        elif kind == "page" or kind == "screen":
            name = get("name")
            if name is not None and (not isinstance(name, str) or len(name) > NAME_LENGTH):
                raise SpecError("name", f"name must be a string of at most {NAME_LENGTH} characters")
            name = name or None
        elif kind == "group":
            group_id = _id(message, "groupId")
            if group_id is None:
                raise SpecError("groupId", "group needs a groupId")
        properties = get("properties")
        if properties is not None and properties.__class__ is not dict:
            raise SpecError("properties", "properties must be an object")
        context = get("context")
        if context is not None and context.__class__ is not dict:
            raise SpecError("context", "context must be an object")
        traits = get("traits")
        if traits is not None and traits.__class__ is not dict:
            raise SpecError("traits", "traits must be an object")
        if traits is None and kind == "identify" and context is not None:
            traits = _object(context, "traits")  # RudderStack puts identify traits in the context
        external_ids = _external_ids(context) if context is not None and "externalIds" in context else None

        raw_time = get("timestamp") or get("originalTimestamp")
        parts = self.texts.parts(raw_time) if self.texts is not None else None
        original = None
        if parts is None:
            try:
                original = parse_time(raw_time)
            except ValueError:
                raise SpecError("timestamp", "timestamp must be an ISO 8601 time")
        raw_sent = get("sentAt")
        if raw_sent is not None and raw_sent == self._sent_raw:
            sent_at, sent_value, shift = self._sent
        else:
            try:
                sent_at = parse_time(raw_sent)
            except ValueError:
                raise SpecError("sentAt", "sentAt must be an ISO 8601 time")
            sent_value = self.encode_time(sent_at) if sent_at is not None else None
            shift = self.received_at - sent_at if sent_at is not None else None
            self._sent_raw, self._sent = raw_sent, (sent_at, sent_value, shift)
        # The time half of the key (``models.Event.dedup_ms``): a message without an id gets a new one,
        # so nothing can repeat it and it may as well sort by its arrival.
        message_id = get("messageId")
        dedup_ms = 0 if message_id is not None and message_id != "" else self.received_ms
        try:
            if parts is not None and self.texts is not None:
                seconds, micro = parts
                if self.by_time and dedup_ms == 0:
                    dedup_ms = seconds * 1000 + micro // 1000
                original_value = self.texts.text(seconds, micro)
                if self.backfill or shift is None:
                    timestamp_value = original_value
                else:  # ``corrected_time`` (receivedAt − (sentAt − timestamp)) as one addition
                    seconds, micro = divmod(seconds * 1_000_000 + micro + shift // _MICROSECOND, 1_000_000)
                    timestamp_value = self.texts.text(seconds, micro)
            elif original is None:
                original_value = None
                timestamp_value = self.received_value
            else:
                if self.by_time and dedup_ms == 0:
                    dedup_ms = epoch_ms(original)
                original_value = self.encode_time(original)
                timestamp_value = (
                    original_value if self.backfill or shift is None else self.encode_time(original + shift)
                )
        except OverflowError:
            raise SpecError("timestamp", "timestamp is out of range")
        received_value = timestamp_value if self.backfill else self.received_value

        violations: list[Violation] | None = None
        if kind in PLANNED_KINDS and name is not None:
            definition = self.plan.events.get((kind, name))
            if definition is not None:
                checked = properties if properties is not None else {}
                if not definition.conforms(checked):
                    violations = check(definition, checked) or None
            elif kind == "track":
                seen = self.out.unplanned.get((kind, name))
                if seen is None:
                    self.out.unplanned[(kind, name)] = [1, properties]
                else:
                    seen[0] += 1
                if self.unplanned_is_violation:
                    violations = [unplanned_violation(name)]
        if violations is not None:
            quarantine = self.quarantine_mode
            self._count(violations, kind, name or "", quarantine)
            if quarantine:
                self._quarantine(message, violations, kind=kind, name=name, counted=True)
                return
            self.out.flagged += 1

        extra = None
        if not message.keys() <= _MODELLED:
            extra = {k: v for k, v in message.items() if k not in _MODELLED}
        self.out.events.append(
            (
                self.brand_id,
                self.source_id,
                _message_id(message_id),
                dedup_ms,
                kind,
                name,
                user_id,
                anonymous_id,
                previous_id,
                group_id,
                timestamp_value,
                original_value,
                sent_value,
                received_value,
                _dumps(properties) if properties is not None else None,
                _dumps(traits) if traits is not None else None,
                _dumps(context) if context is not None else None,
                _dumps(external_ids) if external_ids is not None else None,
                _dumps(extra) if extra else None,
                _dumps(violations) if violations is not None else None,
            )
        )

    def _count(self, violations: list[Violation], kind: str, name: str, quarantined: bool) -> None:
        day = self.received_at.date()
        stats = self.out.stats
        for v in violations:
            key = (day, kind, name, v["property"], v["rule"])
            counts = stats.get(key)
            if counts is None:
                counts = stats[key] = [0, 0]
            counts[0] += 1
            if quarantined:
                counts[1] += 1

    def _quarantine(
        self,
        message: dict[str, Any],
        violations: list[Violation],
        *,
        kind: str | None,
        name: str | None,
        counted: bool = False,
    ) -> None:
        raw_kind = message.get("type")
        if kind is None and isinstance(raw_kind, str) and raw_kind in self.KINDS:
            kind = raw_kind
        if name is None:
            raw_name = message.get("event") if kind == "track" else message.get("name")
            name = raw_name[:NAME_LENGTH] if isinstance(raw_name, str) and raw_name else None
        if not counted:
            self._count(violations, kind or "unknown", name or "", True)
        self.out.quarantined.append(
            (
                self.brand_id,
                self.source_id,
                _message_id(message.get("messageId")),
                kind,
                name,
                self.received_value,
                _dumps(violations),
                _dumps(message),
            )
        )
