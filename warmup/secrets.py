"""Encryption of mailbox secrets at rest (Fernet; MultiFernet so keys can be rotated)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretKeyError(Exception):
    """The configured keys are missing, malformed, or cannot open a stored secret."""


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts with the first key, decrypts with any: rotation is 'prepend a key, re-encrypt'."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise SecretKeyError(
                "WARMUP_SECRET_KEYS is empty: set it to a Fernet key "
                '(python -c "from warmup.secrets import generate_key; print(generate_key())")'
            )
        fernets = []
        for i, key in enumerate(keys):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise SecretKeyError(
                    f"WARMUP_SECRET_KEYS entry {i + 1} is not a Fernet key (32 url-safe base64 bytes)"
                ) from None
        self._box = MultiFernet(fernets)

    def encrypt(self, plaintext: str) -> str:
        return self._box.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._box.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError(
                "no key in WARMUP_SECRET_KEYS opens this mailbox's stored secret; "
                "add the key it was encrypted with, or re-enroll the mailbox"
            ) from None

    def rotate(self, ciphertext: str) -> str:
        return self._box.rotate(ciphertext.encode("ascii")).decode("ascii")
