"""A scheduled export's crontab expression in the reader's words ("Every Monday at 06:00 UTC").

The common shapes are put in words; anything else is shown as it is, marked as a custom schedule. Cron
counts weekdays from Sunday (0 or 7), Babel's day names from Monday.
"""

from __future__ import annotations

import re

from babel.dates import get_day_names
from flask_babel import gettext

_NUMBER = re.compile(r"^\d{1,2}$")
_STEP = re.compile(r"^\*/(\d{1,2})$")
_RANGE = re.compile(r"^(\d)-(\d)$")


def _day_name(number: str, locale: str) -> str:
    names = get_day_names("wide", locale=locale)
    return str(names[(int(number) - 1) % 7])


def _weekdays(field: str, locale: str) -> str | None:
    if _NUMBER.match(field) and int(field) <= 7:
        return _day_name(field, locale)
    parts = field.split(",")
    if len(parts) > 1 and all(_NUMBER.match(p) and int(p) <= 7 for p in parts):
        return gettext(", ").join(_day_name(p, locale) for p in parts)
    return None


def cron_in_words(expression: str, locale: str) -> str:
    """Say when a five-field crontab expression (UTC) fires."""
    fields = expression.split()
    if len(fields) != 5:
        return gettext("Custom schedule: %(cron)s", cron=expression)
    minute, hour, day, month, weekday = fields
    if _NUMBER.match(minute) and _NUMBER.match(hour) and month == "*":
        time = f"{int(hour):02d}:{int(minute):02d}"
        if day == "*" and weekday == "*":
            return gettext("Every day at %(time)s UTC", time=time)
        ranged = _RANGE.match(weekday)
        if day == "*" and ranged and int(ranged.group(2)) <= 7:
            first, last = (_day_name(n, locale) for n in ranged.groups())
            return gettext("From %(first)s to %(last)s at %(time)s UTC", first=first, last=last, time=time)
        days = _weekdays(weekday, locale) if day == "*" else None
        if days:
            return gettext("Every %(days)s at %(time)s UTC", days=days, time=time)
        if _NUMBER.match(day) and weekday == "*":
            return gettext("On day %(day)s of every month at %(time)s UTC", day=int(day), time=time)
    if (hour, day, month, weekday) == ("*", "*", "*", "*"):
        if _NUMBER.match(minute):
            return gettext("Every hour at minute %(minute)s", minute=int(minute))
        step = _STEP.match(minute)
        if step:
            return gettext("Every %(n)s minutes", n=int(step.group(1)))
    return gettext("Custom schedule: %(cron)s", cron=expression)
