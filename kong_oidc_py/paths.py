"""Request paths an upstream may read differently from Kong: what to refuse, and every reading.

Policies match on `kong.request.get_path()`: kong/tools/uri.lua `normalize(path, true)` decodes
`%XX` only for bytes outside RFC 3986 "reserved" (`!*'();:@&=+$,/?%#[]`), upper-cases the
reserved escapes it keeps, removes dot segments and merges `//` (Kong 3.4 to 3.9 alike). So:

* `%2F` (an encoded `/`), `%3B` (`;`) and `%25` (`%`) stay encoded; `%5C` is *decoded* to a raw
  backslash (`\\` is not reserved), as is `%2E` (`.`, resolved as a dot segment);
* `;` path parameters stay in their segment.

Upstreams resolve that path their own way: nginx and many frameworks decode `%2F` and then
remove `..`, Tomcat, Jetty and Spring drop `;params`, IIS and ASP.NET read `\\` as `/`, and a
chain of two decoders turns `%252F` into `/`. A path under a public policy for the plugin can
then name a protected resource upstream (the class of Envoy's escaped-slash CVE-2021-29492).

By default (`allow_ambiguous_paths` off) such a path is refused (`path_problems`). With the
option on, `path_readings` lists every reading an upstream may give the path and the policy
matcher applies the strictest result. Control characters (Kong decodes `%00`..`%1F`) are
refused in both modes: C upstreams stop at NUL, and no real path needs them.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

# Log reasons (400 invalid_request); docs/DESIGN.md lists them with the InvalidRequest reasons.
PATH_ENCODED_SEPARATOR = "path_encoded_separator"  # %2F or %5C, at any encoding depth
PATH_PARAMETER = "path_parameter"                  # ";" or %3B (at any depth) in a segment
PATH_BACKSLASH = "path_backslash"                  # a raw "\" (Kong decodes %5C into one)
PATH_ENCODED_DOT = "path_encoded_dot"              # %252E: "." once a second decoder runs
PATH_CONTROL_CHARACTER = "path_control_character"  # %00..%1F, %7F decoded by Kong
PATH_TOO_AMBIGUOUS = "path_too_ambiguous"          # more readings than MAX_READINGS

PATH_REASONS = (PATH_CONTROL_CHARACTER, PATH_ENCODED_SEPARATOR, PATH_PARAMETER, PATH_BACKSLASH,
                PATH_ENCODED_DOT, PATH_TOO_AMBIGUOUS)

# A path with this many distinct readings is refused even when ambiguous paths are allowed:
# nothing legitimate needs it, and the matcher must stay cheap.
MAX_READINGS = 64

# "%" then any number of "25" (each one more decoding round), then the byte it finally is.
_ESCAPE_CHAIN = re.compile(r"%(?:25)*(2F|5C|3B|2E)", re.IGNORECASE)
_FINAL = {"2F": PATH_ENCODED_SEPARATOR, "5C": PATH_ENCODED_SEPARATOR, "3B": PATH_PARAMETER}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# One decoding round of the escapes that change how a path splits into segments.
_ONE_ROUND = re.compile(r"%(25|2F|5C|3B|2E)", re.IGNORECASE)
_PARAMS = re.compile(r";[^/]*")


def path_problems(path: str) -> tuple[str, ...]:
    """The reasons `path` is ambiguous, in PATH_REASONS order; empty when it is not."""
    found: set[str] = set()
    if _CONTROL.search(path):
        found.add(PATH_CONTROL_CHARACTER)
    if "\\" in path:
        found.add(PATH_BACKSLASH)
    if ";" in path:
        found.add(PATH_PARAMETER)
    if "%" in path:
        for m in _ESCAPE_CHAIN.finditer(path):
            final = m.group(1).upper()
            if final == "2E":
                # A single %2E never reaches us (Kong decodes it); %252E is "." for a second decoder.
                if len(m.group(0)) > 3:
                    found.add(PATH_ENCODED_DOT)
            else:
                found.add(_FINAL[final])
    return tuple(r for r in PATH_REASONS if r in found)


def normalize_path(path: str) -> str:
    """RFC 3986 dot-segment removal plus `//` merging, keeping a trailing slash: what Kong does
    to a raw path, and what most upstreams do to the path they decoded."""
    if "//" not in path and "/." not in path:
        return path
    trailing = path.endswith("/") or path.endswith("/.") or path.endswith("/..")
    norm = posixpath.normpath("/" + path.lstrip("/"))
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if trailing and norm != "/":
        norm += "/"
    return norm


def _decode_round(path: str) -> str:
    return _ONE_ROUND.sub(lambda m: chr(int(m.group(1), 16)), path)


def _readings_of(path: str) -> tuple[str, ...]:
    """Each single step an upstream may take: decode once, `\\` as `/`, drop `;params`, resolve
    dot segments. Steps the path gives no hold to are left out."""
    out = []
    if "%" in path:
        out.append(_decode_round(path))
    if "\\" in path:
        out.append(path.replace("\\", "/"))
    if ";" in path:
        out.append(_PARAMS.sub("", path))
    out.append(normalize_path(path if path.startswith("/") else "/" + path))
    return tuple(out)


def path_readings(path: str, limit: int = MAX_READINGS) -> tuple[str, ...] | None:
    """Every path an upstream may act on for Kong's normalized `path`: the closure of the steps
    in `_readings_of` in every order and combination (Tomcat drops parameters before decoding,
    Spring after; some servers resolve dots after decoding, some never do). `path` itself comes
    first. None when there are more than `limit` readings.

    The closure is finite: every step except dot removal makes the path shorter, `\\` -> `/`
    keeps the length but removes a backslash, and dot removal is idempotent.
    """
    seen = {path: None}
    queue = [path]
    while queue:
        current = queue.pop()
        for reading in _readings_of(current):
            if reading not in seen:
                if len(seen) >= limit:
                    return None
                seen[reading] = None
                queue.append(reading)
    return tuple(seen)


@dataclass(frozen=True)
class PathVerdict:
    """What the plugin makes of one path (also for `explain`): `refused` is the log reason of a
    400, else None; `readings` are the paths the policy matcher evaluates (the path alone when
    it is unambiguous)."""

    path: str
    problems: tuple[str, ...]
    readings: tuple[str, ...]
    refused: str | None


# Any byte path_problems looks at; a path without one has no problem (the common case).
_SUSPECT = re.compile(r"[\x00-\x1f\x7f\\;%]")
# Verdicts on clean paths, by path (a pure function of it); bounded in entries and in path
# length, emptied when full.
_CLEAN: dict[str, "PathVerdict"] = {}
_MAX_CLEAN = 1024
_MAX_CLEAN_PATH = 256


def judge_path(path: str, allow_ambiguous: bool) -> PathVerdict:
    verdict = _CLEAN.get(path)
    if verdict is not None:
        return verdict
    if _SUSPECT.search(path) is None:
        verdict = PathVerdict(path, (), (path,), None)
        if len(path) <= _MAX_CLEAN_PATH:
            if len(_CLEAN) >= _MAX_CLEAN:
                _CLEAN.clear()
            _CLEAN[path] = verdict
        return verdict
    problems = path_problems(path)
    if not problems:
        return PathVerdict(path, problems, (path,), None)
    if PATH_CONTROL_CHARACTER in problems or not allow_ambiguous:
        return PathVerdict(path, problems, (path,), problems[0])
    readings = path_readings(path)
    if readings is None:
        return PathVerdict(path, problems, (path,), PATH_TOO_AMBIGUOUS)
    return PathVerdict(path, problems, readings, None)


# Client-safe descriptions for the 400 (RFC 6750 error_description); the log gets the reason.
PATH_DESCRIPTIONS = {
    PATH_ENCODED_SEPARATOR: "The request path contains an encoded slash or backslash",
    PATH_PARAMETER: "The request path contains a ';' path parameter",
    PATH_BACKSLASH: "The request path contains a backslash",
    PATH_ENCODED_DOT: "The request path contains a double-encoded dot",
    PATH_CONTROL_CHARACTER: "The request path contains a control character",
    PATH_TOO_AMBIGUOUS: "The request path has too many possible readings",
}
