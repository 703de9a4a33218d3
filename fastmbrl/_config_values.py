"""Setting values: a JSON value converted to the type of a configuration field (checked, the error
naming the key), a configuration's sections as plain JSON types, and nested overrides merged.

Generic over the frozen dataclasses of ``fastmbrl.config`` (which re-exports ``ConfigError``,
``to_dict`` and ``merge``): nothing here knows a section's fields.
"""
import dataclasses
import json
import typing

__all__ = ["ConfigError", "to_dict", "merge"]


class ConfigError(ValueError):
    """A configuration key or value that cannot be used; the message names the key."""


def to_dict(config):
    """Return ``config`` (a RunConfig) as nested plain dicts of JSON types (tuples become lists)."""
    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = {g.name: plain(getattr(value, g.name)) for g in dataclasses.fields(value)}
        else:
            out[f.name] = plain(value)
    return out


def _coerce(key, value, annotation, default):
    """Convert a JSON value to the type of the field ``key``; raise ConfigError naming it."""
    kind = type(default) if default is not None else None
    if default == "auto":  # 'auto' or an integer (e.g. model.n_threads)
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected 'auto' or an integer, got {value!r}")
        return value
    origin = typing.get_origin(annotation) if not isinstance(annotation, str) else None
    if default is None or origin is typing.Union or annotation in ("typing.Optional[int]",):
        if value is None:
            return None
        kind = int
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not (isinstance(value, int)
                                           or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if kind is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise ConfigError(f"{key}: expected a list of positive integers, got {value!r}")
        return tuple(int(v) for v in value)
    if kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a JSON object, got {value!r}")
        return dict(value)
    return value


def _build_section(cls, name, values, base):
    if not isinstance(values, dict):
        raise ConfigError(f"{name}: expected a JSON object of settings, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown setting; known: {', '.join(sorted(known))}")
        f = known[key]
        changes[key] = _coerce(f"{name}.{key}", value, f.type, getattr(base, key))
    return dataclasses.replace(base, **changes)


def _env_kwargs(value):
    """``value`` as env_kwargs: a dict of string keys and JSON values (tuples become lists)."""
    if not isinstance(value, dict):
        raise ConfigError(f"env_kwargs: expected a JSON object of keywords, got {value!r}")
    for key in value:
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"env_kwargs: expected keyword names, got {key!r}")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"env_kwargs: expected JSON values (numbers, strings, booleans, lists, "
                          f"null), got {value!r} ({exc})") from None


def merge(*dicts):
    """Merge nested override dicts, later ones winning."""
    out = {}
    for d in dicts:
        for k, v in (d or {}).items():
            if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "options":
                out[k] = merge(out[k], v)
            else:
                out[k] = v
    return out
