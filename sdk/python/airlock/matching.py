"""Glob and prefix matching for methods, hosts and paths, as in the Rust and
Go SDKs (same results on the same bytes).

Globs: `*` matches any run of characters within one path segment (no `/`),
`**` matches anything including `/`, `?` matches one byte other than `/`;
everything else matches itself. So `/admin/**` matches every path under
`/admin/`, `/users/*/keys` one level of user, and `*.example.com` any
subdomain label. Text is compared as UTF-8 bytes, as the other SDKs do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .types import Request, _ascii_lower

_ANY_RUN = -1  # `**`: any run of bytes
_SEGMENT_RUN = -2  # `*`: any run of bytes other than `/`
_ONE = -3  # `?`: one byte other than `/`
_SLASH = ord("/")


def glob(pattern: str, text: str) -> bool:
    """True if `text` matches the glob `pattern`.

    Time is proportional to pattern length times text length, whatever the
    pattern: the text is scanned once while the set of pattern positions it
    could be at is tracked (no backtracking, so no blow-up on `**a**a**b`).
    """
    if "*" not in pattern and "?" not in pattern:
        return pattern == text
    tokens = _tokenize(pattern.encode())
    # active[i]: the text read so far can end with the pattern at token i.
    active = [False] * (len(tokens) + 1)
    active[0] = True
    _close_over_stars(tokens, active)
    for byte in text.encode():
        following = [False] * (len(tokens) + 1)
        for position, token in enumerate(tokens):
            if not active[position]:
                continue
            if token == _ANY_RUN or (token == _SEGMENT_RUN and byte != _SLASH):
                following[position] = True
            elif token == byte or (token == _ONE and byte != _SLASH):
                following[position + 1] = True
        _close_over_stars(tokens, following)
        if True not in following:
            return False
        active = following
    return active[len(tokens)]


def _tokenize(pattern: bytes) -> list[int]:
    tokens = []
    index = 0
    while index < len(pattern):
        byte = pattern[index]
        index += 1
        if byte == ord("*") and index < len(pattern) and pattern[index] == ord("*"):
            index += 1
            tokens.append(_ANY_RUN)
        elif byte == ord("*"):
            tokens.append(_SEGMENT_RUN)
        elif byte == ord("?"):
            tokens.append(_ONE)
        else:
            tokens.append(byte)
    return tokens


def _close_over_stars(tokens: list[int], active: list[bool]) -> None:
    """A star may match nothing: where it is active, so is the token after it."""
    for position, token in enumerate(tokens):
        if active[position] and token in (_ANY_RUN, _SEGMENT_RUN):
            active[position + 1] = True


def any_glob(patterns: Iterable[str], text: str) -> bool:
    """True if `text` matches any of `patterns`."""
    return any(glob(pattern, text) for pattern in patterns)


def path_under(prefix: str, path: str) -> bool:
    """True if `path` is `prefix` or lies under it by whole segments:
    `/api` covers `/api` and `/api/users` but not `/apiary`."""
    prefix = prefix.rstrip("/")
    if not path.startswith(prefix):
        return False
    rest = path[len(prefix):]
    return rest == "" or rest.startswith("/")


def method(pattern: str, method: str) -> bool:
    """True if `method` matches `pattern`, ASCII case-insensitively; `*` matches any."""
    return pattern == "*" or _ascii_lower(pattern) == _ascii_lower(method)


def request_matches(
    methods: Sequence[str] | None,
    paths: Sequence[str] | None,
    hosts: Sequence[str] | None,
    request: Request,
) -> bool:
    """True if `request` matches a rule's optional `methods`, `paths` and
    `hosts`: every field given must match (None matches all, an empty list
    none). Host patterns are compared lower-case, as hosts arrive."""
    if methods is not None and not any(method(pattern, request.method) for pattern in methods):
        return False
    if paths is not None and not any_glob(paths, request.path):
        return False
    if hosts is not None:
        return any(glob(_ascii_lower(pattern), request.host) for pattern in hosts)
    return True
