"""Password hashing with argon2id (parameters from settings, so tests can make it cheap)."""

from __future__ import annotations

from argon2 import PasswordHasher as Argon2
from argon2.exceptions import InvalidHashError, VerificationError


class Argon2PasswordHasher:
    def __init__(self, time_cost: int = 2, memory_kib: int = 19_456) -> None:
        self._argon2 = Argon2(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)

    def hash(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._argon2.check_needs_rehash(password_hash)
