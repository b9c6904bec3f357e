"""Device auth tokens made locally, so that each one is on disk before the platform ever sees it."""

import secrets
import string

TOKEN_SYMBOLS = "_.!&@?*+()-"
TOKEN_ALPHABET = string.ascii_letters + string.digits + TOKEN_SYMBOLS
TOKEN_LENGTH = 24  # the platform takes 8 to 36 characters
_REQUIRED_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits, TOKEN_SYMBOLS)


def token_problem(token):
    """Why `token` is not one the factory makes, or None. The factory's rule is stricter than the platform's
    (which takes 8 to 36 of these characters: see the fake platform's rules): a lowercase and an uppercase letter,
    a digit and a symbol, and no character twice in a row, so that any platform version that ever asked for a
    "strong" token takes it."""
    if not 8 <= len(token) <= 36:
        return "must be 8 to 36 characters long"
    if any(character not in TOKEN_ALPHABET for character in token):
        return f"may hold only letters, digits and {TOKEN_SYMBOLS}"
    if not all(any(character in kind for character in token) for kind in _REQUIRED_CLASSES):
        return "needs a lowercase letter, an uppercase letter, a digit and a symbol"
    if any(first == second for first, second in zip(token, token[1:], strict=False)):
        return "must not repeat a character twice in a row"
    return None


# Random bytes below this map evenly onto the alphabet (3 x 73); the rest are skipped, so no character is favoured.
_UNBIASED_BYTE_LIMIT = 256 // len(TOKEN_ALPHABET) * len(TOKEN_ALPHABET)


def new_device_token():
    """A random token (about 148 bits) that meets the platform's rules."""
    while True:
        raw = secrets.token_bytes(2 * TOKEN_LENGTH)
        characters = [TOKEN_ALPHABET[byte % len(TOKEN_ALPHABET)] for byte in raw if byte < _UNBIASED_BYTE_LIMIT]
        token = "".join(characters[:TOKEN_LENGTH])
        if len(token) == TOKEN_LENGTH and token_problem(token) is None:
            return token


def redact_tokens(text, tokens):
    """`text` with every one of `tokens` blanked out: for platform messages that might quote a request."""
    for token in tokens:
        if token in text:
            text = text.replace(token, "<token>")
    return text
