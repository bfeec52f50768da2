"""The sign-in throttle, in the database: every process and every app on it sees the same count.

Each attempt (the sign-in form or ``POST /token``) is a row of ``hexie_login_attempts``.
Before a password is checked (before Argon2 spends its time), :meth:`LoginThrottle.check`
looks at the recent rows; every limit is a sliding window, so each one lifts by itself
once the failures age out. Nothing locks the right password out for good.

* one username from one address: after ``PAIR_FAILURES`` failures in ``WINDOW``, refused
  until ``PAIR_LOCKOUT`` after the latest one (a minute);
* one username from any address: after ``USER_FAILURES`` failures in ``WINDOW``, refused,
  except from an address this username signed in from in the last ``KNOWN_FOR`` (so a
  guesser elsewhere cannot lock her out at her own desk);
* one address: after ``ADDRESS_FAILURES`` failures in ``WINDOW``, or ``ADDRESS_RATE``
  attempts of any kind in ``RATE_WINDOW``, refused (a flood of ``POST /token`` stops here,
  before it eats the CPU every other request needs).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable

from sqlalchemy import and_, delete, func, or_, select

from hexie.models import LoginAttempt

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

WINDOW = timedelta(minutes=15)
PAIR_FAILURES = 5
PAIR_LOCKOUT = timedelta(minutes=1)
USER_FAILURES = 20
ADDRESS_FAILURES = 100
RATE_WINDOW = timedelta(minutes=1)
ADDRESS_RATE = 120
KNOWN_FOR = timedelta(days=30)
#: how long rows are kept: failures for the window (a day, for the record), successes for KNOWN_FOR
KEEP_FAILURES = timedelta(days=1)


@dataclass(frozen=True)
class Verdict:
    """Whether an attempt may go ahead; ``retry_after`` seconds when it may not."""

    allowed: bool
    retry_after: int = 0
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


def _key(username: str) -> str:
    return (username or "").strip().lower()[:80]


class LoginThrottle:
    """Failed sign-ins per username, address and pair, counted in the database.

    ``clock`` returns seconds since the epoch (default: :func:`time.time`); tests move it.
    ``engine`` may be given later (:meth:`bind`): the web layer hands over the app's.
    """

    def __init__(self, engine: "Engine | None" = None, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def bind(self, engine: "Engine") -> "LoginThrottle":
        if self.engine is None:
            self.engine = engine
        return self

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc).replace(tzinfo=None)

    def check(self, username: str, address: str) -> Verdict:
        """May this username try a password from this address now? (One query, no writes.)"""
        user, addr, now = _key(username), (address or "-")[:64], self._now()
        window, rate = now - WINDOW, now - RATE_WINDOW
        failed = LoginAttempt.ok.is_(False)
        pair = and_(LoginAttempt.username == user, LoginAttempt.address == addr)
        with self.engine.session_factory() as s:
            row = s.execute(select(
                func.count().filter(pair, failed, LoginAttempt.at > window).label("pair"),
                func.max(LoginAttempt.at).filter(pair, failed, LoginAttempt.at > window).label("pair_last"),
                func.count().filter(LoginAttempt.username == user, failed, LoginAttempt.at > window).label("user"),
                func.count().filter(pair, LoginAttempt.ok.is_(True)).label("known"),
                func.count().filter(LoginAttempt.address == addr, failed, LoginAttempt.at > window).label("addr"),
                func.count().filter(LoginAttempt.address == addr, LoginAttempt.at > rate).label("rate"),
            ).where(or_(LoginAttempt.username == user, LoginAttempt.address == addr),
                    LoginAttempt.at > now - KNOWN_FOR)).one()
        if row.rate >= ADDRESS_RATE:
            return Verdict(False, int(RATE_WINDOW.total_seconds()), "address_rate")
        if row.addr >= ADDRESS_FAILURES:
            return Verdict(False, int(WINDOW.total_seconds()), "address")
        if row.pair >= PAIR_FAILURES and row.pair_last is not None and now - row.pair_last < PAIR_LOCKOUT:
            return Verdict(False, max(1, int((PAIR_LOCKOUT - (now - row.pair_last)).total_seconds())), "pair")
        if row.user >= USER_FAILURES and not row.known:
            return Verdict(False, int(WINDOW.total_seconds()), "username")
        return Verdict(True)

    def blocked(self, username: str, address: str) -> bool:
        return not self.check(username, address)

    def record(self, username: str, address: str, ok: bool) -> None:
        """Note one attempt (its own short transaction), and forget what no limit looks at any more."""
        now = self._now()
        with self.engine.session_factory() as s:
            s.add(LoginAttempt(username=_key(username), address=(address or "-")[:64], at=now, ok=ok))
            s.execute(delete(LoginAttempt).where(
                or_(and_(LoginAttempt.ok.is_(False), LoginAttempt.at < now - KEEP_FAILURES),
                    LoginAttempt.at < now - KNOWN_FOR)))
            s.commit()

    def failed(self, username: str, address: str) -> None:
        self.record(username, address, False)

    def succeeded(self, username: str, address: str) -> None:
        """A right password: recorded (its address becomes known for the username); the pair's
        failures no longer count."""
        user, addr = _key(username), (address or "-")[:64]
        with self.engine.session_factory() as s:
            s.execute(delete(LoginAttempt).where(LoginAttempt.username == user, LoginAttempt.address == addr,
                                                 LoginAttempt.ok.is_(False)))
            s.commit()
        self.record(username, address, True)
