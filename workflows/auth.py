"""Password hashing with Argon2id (argon2-cffi).

Hashes carry their own parameters, so stronger settings later still verify old
hashes; :func:`needs_rehash` tells when to re-hash one at the next sign-in.
"""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

#: A password hash that matches no password (a user who may not sign in with one).
UNUSABLE_PASSWORD = "!"

_hasher = PasswordHasher()


def configure_hasher(hasher: PasswordHasher | None = None) -> PasswordHasher:
    """Replace the hasher (the test suite uses cheap parameters); returns the old one.

    ``None`` restores argon2-cffi's recommended defaults.
    """
    global _hasher
    old, _hasher = _hasher, hasher or PasswordHasher()
    return old


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password``, with a fresh salt."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str | None) -> bool:
    """Whether ``password`` matches ``password_hash``; False (never an error) otherwise.

    A missing, unusable or malformed hash matches nothing.
    """
    if not password_hash or password is None:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError, ValueError, TypeError):
        # VerifyMismatchError is a VerificationError.
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True
