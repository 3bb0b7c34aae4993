"""Fuzz targets for every parser that reads attacker input (issue #14; fuzz/FUZZING.md).

Each module `fuzz/<name>.py` exposes `one_input(data: bytes)`, which raises `Violation` when the
plugin breaks its contract (an escaping exception type, an echoed input, an input that takes too
long) and `seeds()`, the committed corpus in `fuzz/corpus/<name>/`. `fuzz/run.py` drives them
under atheris (coverage-guided, `make fuzz`); tests/unit/test_fuzz_targets.py replays the corpus
under pytest, so the targets themselves are tested in `make test`.
"""

TARGETS = (
    "verify_token",
    "extract_token",
    "session_cookie",
    "callback",
    "discovery",
    "jwks",
    "token_response",
    "policy_match",
    "config_map",
    "plugin_msgpack",
)
