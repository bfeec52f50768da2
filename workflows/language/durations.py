"""Durations: the short form (``3d``, ``2h 30m``) and ISO 8601 (``P3D``, ``PT4H``)."""
from __future__ import annotations

import datetime as dt
import re

from hexie.workflows.language.messages import _kinds, _msg


# --------------------------------------------------------------------------- durations

_SHORT_DURATION = re.compile(r"(\d+)\s*([mhdw])")
_ISO_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?")
_ISO_CALENDAR = re.compile(r"P(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T.*)?")
_SHORT_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> dt.timedelta:
    """Parse ``30m``, ``12h``, ``3d``, ``2w`` or ISO 8601 (``P180D``, ``PT12H``, ``P1DT2H``).

    Days are calendar days. Years and months are refused, having no fixed length.
    Raises :class:`ValueError` with a bilingual message for anything else.
    """
    if not isinstance(text, str):
        raise ValueError(_msg(f"时长应为文本（如 3d），实际为{_kinds(text)['kz']}",
                              f"a duration must be text such as 3d, got {_kinds(text)['ke']}"))
    source = text.strip()
    short = _SHORT_DURATION.fullmatch(source)
    if short:
        delta = dt.timedelta(**{_SHORT_UNITS[short.group(2)]: int(short.group(1))})
    else:
        delta = _parse_iso_duration(source.upper(), text)
    if delta <= dt.timedelta(0):
        raise ValueError(_msg(f"时长必须大于零：'{text}'", f"a duration must be longer than zero: '{text}'"))
    return delta


def _parse_iso_duration(upper: str, original: str) -> dt.timedelta:
    """The ISO 8601 branch of :func:`parse_duration`."""
    match = _ISO_DURATION.fullmatch(upper)
    parts = match.groupdict() if match else {}
    if not match or not any(parts.values()) or upper.endswith("T"):
        if _ISO_CALENDAR.fullmatch(upper) and ("Y" in upper.split("T")[0] or "M" in upper.split("T")[0]):
            raise ValueError(_msg(f"时长不能用年或月（长度不固定）：'{original}'，请改用天数，如 P30D",
                                  f"years and months have no fixed length: '{original}'; use days such as P30D"))
        raise ValueError(_msg(
            f"无效的时长 '{original}'：应为 30m、12h、3d、2w 或 ISO 8601（如 P180D、PT12H）",
            f"bad duration '{original}': use 30m, 12h, 3d, 2w or ISO 8601 such as P180D or PT12H"))
    return dt.timedelta(weeks=int(parts["weeks"] or 0), days=int(parts["days"] or 0),
                        hours=int(parts["hours"] or 0), minutes=int(parts["minutes"] or 0),
                        seconds=float(parts["seconds"] or 0))
