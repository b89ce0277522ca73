"""Applying a stored event to its aggregate, as `event.mutate(aggregate)` does, without
eventsourcing's per-call work: for each event, `mutate` looks up the decorated method, builds
the event's attribute dict and filters it by the method's signature. Here that is done once per
event class: each class gets a function that calls the decorated method (or the aggregate's
`__base_init__` and `__init__`) with the event's attributes by name.

Used by the audit's replay only (`audit verify`), where it is most of the time per event. The
aggregates it builds are those of `mutate` (tests/unit/test_audit_appliers.py compares them on
a generated log). Whenever an event is not exactly the common case (not the next version of
an existing aggregate, an attribute the method takes is missing, a class that overrides
`apply` or `mutate`, an unknown topic), it falls back to `event.mutate` itself, so every error,
and so every finding of the audit, stays that of eventsourcing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import FunctionType
from typing import Any

from eventsourcing.domain import (
    CanInitAggregate,
    CanMutateAggregate,
    CommandMethodDecorator,
    DecoratedFuncCaller,
    _init_mentions_id,
    decorated_funcs,
)
from eventsourcing.utils import resolve_topic

Applier = Callable[[Any, Any], Any]
"""(event, aggregate or None) -> the aggregate after the event (as `event.mutate`)."""

_CACHE_LIMIT = 10_000  # a forged log's endless topics are not kept

_appliers: dict[type, Applier] = {}
_creators: dict[str, Callable[[dict[str, Any]], Any]] = {}  # topic -> builds the aggregate


def _mutate(event: Any, aggregate: Any) -> Any:
    return event.mutate(aggregate)


def applier(event_class: type) -> Applier:
    """The function applying events of this class (made once per class)."""
    found = _appliers.get(event_class)
    if found is None:
        found = _appliers[event_class] = _make_applier(event_class)
    return found


def apply_event(event: Any, aggregate: Any) -> Any:
    """`event.mutate(aggregate)`, the fast way when the event's class allows it."""
    return applier(type(event))(event, aggregate)


def _defines(event_class: type, name: str) -> list[type]:
    return [klass for klass in event_class.__mro__ if name in vars(klass)]


def _names(method: Callable[..., Any]) -> tuple[str, tuple[str, ...]] | None:
    """(the bound parameter's name, the others) when every parameter can be passed by name."""
    parameters = list(inspect.signature(method).parameters.values())
    if not parameters or any(
        p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in parameters
    ):
        return None
    return parameters[0].name, tuple(p.name for p in parameters[1:])


def _arguments(names: tuple[str, ...], indent: str) -> tuple[str, str]:
    """(statements reading each argument from the event's dict `d` into a local, the keyword
    arguments passing them): read before the call, so a KeyError means a missing attribute."""
    reads = "".join(f"{indent}a{i} = d[{name!r}]\n" for i, name in enumerate(names))
    return reads or f"{indent}pass\n", ", ".join(f"{name}=a{i}" for i, name in enumerate(names))


def _compile(source: str, name: str, scope: dict[str, Any]) -> Any:
    """A function from generated source: keyword arguments read from the event's dict with no
    dict built per call. The names come from the methods' signatures (identifiers)."""
    exec(compile(source, f"<audit applier {name}>", "exec"), scope)
    return scope[name]


def _make_applier(event_class: type) -> Applier:
    if not issubclass(event_class, CanMutateAggregate):
        return _mutate
    mutates = _defines(event_class, "mutate")
    applies = _defines(event_class, "apply")
    if issubclass(event_class, CanInitAggregate):
        if mutates[:1] != [CanInitAggregate] or applies != [CanMutateAggregate]:
            return _mutate
        return _creating
    if mutates[:1] != [CanMutateAggregate]:
        return _mutate
    if applies != [DecoratedFuncCaller, CanMutateAggregate]:
        return _mutate  # an `apply` of its own (or no decorated method): as it is
    method = decorated_funcs.get(event_class)
    if not isinstance(method, FunctionType):
        return _mutate
    names = _names(method)
    if names is None:
        return _mutate
    bound, parameters = names
    # As CanMutateAggregate.mutate: check id and version, apply, then version and time. A
    # missing attribute (KeyError, before any change) or anything unusual: `mutate` decides.
    reads, keywords = _arguments(parameters, "        ")
    source = (
        "def apply(event, aggregate):\n"
        "    d = event.__dict__\n"
        "    if (aggregate is None or BOUND in d\n"
        "            or d.get('originator_id') != aggregate.id\n"
        "            or d.get('originator_version') != aggregate.version + 1):\n"
        "        return event.mutate(aggregate)\n"
        "    try:\n"
        f"{reads}"
        "    except KeyError:\n"
        "        return event.mutate(aggregate)\n"
        f"    method(aggregate, {keywords})\n"
        "    aggregate.version = d['originator_version']\n"
        "    aggregate.modified_on = event.timestamp\n"
        "    return aggregate\n"
    )
    made: Applier = _compile(source, "apply", {"BOUND": bound, "method": method})
    return made


def _creating(event: Any, aggregate: Any) -> Any:
    """CanInitAggregate.mutate: the aggregate's class from the event's topic, then
    `__base_init__` and `__init__` with the event's attributes they name."""
    if aggregate is not None:
        return event.mutate(aggregate)
    d = event.__dict__
    topic = d.get("originator_topic")
    create = _creators.get(topic) if isinstance(topic, str) else None
    if create is None:
        create = _make_creator(topic)
        if create is None:
            return event.mutate(aggregate)
        if len(_creators) < _CACHE_LIMIT:
            _creators[topic] = create  # type: ignore[index]
    try:
        return create(d)
    except _Missing:
        return event.mutate(aggregate)


class _Missing(Exception):
    """An attribute `__init__` takes is missing: `mutate` decides."""


def _make_creator(topic: Any) -> Callable[[dict[str, Any]], Any] | None:
    try:
        aggregate_class: Any = resolve_topic(topic)
    except Exception:  # `mutate` raises it again, as the finding
        return None
    if not isinstance(aggregate_class, type):
        return None
    # What `type(agg).__base_init__` and `type(agg).__init__` are (for an `@event` __init__,
    # the decorator hands out the decorated function): called directly, as `mutate` calls them
    # through the instance, without the decorator's __get__ each time.
    base_init = getattr(aggregate_class, "__base_init__", None)
    init_method = getattr(aggregate_class, "__init__", None)
    if not isinstance(base_init, FunctionType) or not isinstance(init_method, FunctionType):
        return None
    for klass in aggregate_class.__mro__:  # the descriptor `agg.__init__` goes through
        if "__init__" in vars(klass):
            descriptor = vars(klass)["__init__"]
            if descriptor is not init_method and not (
                isinstance(descriptor, CommandMethodDecorator)
                and descriptor.decorated_func is init_method
                and descriptor.decorated_property is None
            ):
                return None
            break
    base, init = _names(base_init), _names(init_method)
    if base is None or init is None:
        return None
    init_names = init[1]
    mentions_id = aggregate_class in _init_mentions_id
    if mentions_id:
        init_names = tuple(name for name in init_names if name != "id")
    base_reads, base_keywords = _arguments(base[1], "        ")
    init_reads, init_keywords = _arguments(init_names, "        ")
    if mentions_id:
        init_keywords = ", ".join(filter(None, [init_keywords, "id=d['originator_id']"]))
    # The base's arguments are read into a0.., then __init__'s (the same local names, read
    # again after the base call has used them).
    source = (
        "def create(d):\n"
        "    if BASE in d or INIT in d:\n"
        "        raise Missing\n"
        "    try:\n"
        f"{base_reads}"
        "    except KeyError:\n"
        "        raise Missing from None\n"
        "    aggregate = cls.__new__(cls)\n"
        f"    base_init(aggregate, {base_keywords})\n"
        "    try:\n"
        f"{init_reads}"
        "    except KeyError:\n"
        "        raise Missing from None\n"
        f"    init(aggregate, {init_keywords})\n"
        "    return aggregate\n"
    )
    scope = {
        "BASE": base[0],
        "INIT": init[0],
        "cls": aggregate_class,
        "base_init": base_init,
        "init": init_method,
        "Missing": _Missing,
    }
    creator: Callable[[dict[str, Any]], Any] = _compile(source, "create", scope)
    return creator
