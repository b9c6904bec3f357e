"""Device auth tokens made locally, so that each one is on disk before the platform ever sees it."""

import secrets
import string

TOKEN_SYMBOLS = "_.!&@?*+()-"
TOKEN_ALPHABET = string.ascii_letters + string.digits + TOKEN_SYMBOLS
TOKEN_LENGTH = 24  # the platform takes 8 to 36 characters
_REQUIRED_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits, TOKEN_SYMBOLS)


def token_problem(token):
    """Why the platform would refuse `token`, or None when it meets the rules."""
    if not 8 <= len(token) <= 36:
        return "must be 8 to 36 characters long"
    if any(character not in TOKEN_ALPHABET for character in token):
        return f"may hold only letters, digits and {TOKEN_SYMBOLS}"
    if not all(any(character in kind for character in token) for kind in _REQUIRED_CLASSES):
        return "needs a lowercase letter, an uppercase letter, a digit and a symbol"
    if any(first == second for first, second in zip(token, token[1:])):
        return "must not repeat a character twice in a row"
    return None


def new_device_token():
    """A random token (about 140 bits) that meets the platform's rules."""
    while True:
        token = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))
        if token_problem(token) is None:
            return token
