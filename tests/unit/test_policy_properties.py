"""Property: the policy decision is the same for every equivalent spelling of a request path.

Paths reach the matcher as Kong hands them over (`kong.request.get_path()`: kong/tools/uri.lua
normalize with merged slashes, modelled in tests/kong_host/uri.py), and also raw, for a caller
that skips Kong's normalization (the matcher's own guard). Kept generic on purpose: it holds
for any matcher that decides on the normalized path, however the path is read.

Hypothesis runs derandomized with no example database, so `make test` is deterministic.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kong_oidc_py.config import parse_config
from kong_oidc_py.policy import PolicySet
from tests.kong_host.uri import normalize

PROPERTY = settings(max_examples=300, derandomize=True, database=None, deadline=None)
SEGMENTS = ["api", "admin", "administrators", "pub", "public", "v1", "x", "a.b", "~u", "2024"]
UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~")

segments = st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=4)
prefixes = st.builds(lambda segs, slash: "/" + "/".join(segs) + ("/" if slash and segs else ""),
                     st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=2), st.booleans())
policies = st.lists(
    st.fixed_dictionaries({
        "paths": st.lists(st.one_of(prefixes, st.sampled_from(["~/api/v[0-9]+$", "~/admin"])), min_size=1, max_size=2),
        "methods": st.lists(st.sampled_from(["GET", "POST", "delete"]), max_size=2),
    }),
    min_size=1, max_size=4,
)


def policy_set(items: list[dict]) -> PolicySet:
    named = [{"name": f"p{i}", "scopes_required": ["s"], **item} for i, item in enumerate(items)]
    return PolicySet.from_config(parse_config({"issuer": "https://idp.example.com", "allow_any_audience": True, "policies": named}))


@st.composite
def spelled(draw: st.DrawFn) -> tuple[str, str]:
    """(a path, an equivalent spelling of it): dot segments, doubled slashes, percent-encoded
    unreserved characters in either hex case, each applied at drawn places."""
    segs = draw(segments)
    trailing = draw(st.booleans()) and bool(segs)
    path = "/" + "/".join(segs) + ("/" if trailing else "")
    out = []
    for seg in segs:
        for _ in range(draw(st.integers(0, 1))):
            out.append(draw(st.sampled_from([".", "x/..", "", "admin/.."])))
        chars = []
        for ch in seg:
            if ch in UNRESERVED and draw(st.integers(0, 3)) == 0:
                code = f"%{ord(ch):02X}"
                ch = code if draw(st.booleans()) else code.lower()
            chars.append(ch)
        out.append("".join(chars))
    variant = "/" + "/".join(out) + ("/" if trailing else "")
    return path, variant


@PROPERTY
@given(policies, spelled(), st.sampled_from(["GET", "get", "Post", "DELETE", "PATCH"]))
def test_every_equivalent_spelling_of_a_path_gets_the_same_policy(items, pair, method):
    path, variant = pair
    rules = policy_set(items)
    expected = rules.match(path=normalize(path, True), method=method.upper()).name
    assert rules.match(path=normalize(variant, True), method=method).name == expected


@PROPERTY
@given(policies, spelled())
def test_the_matchers_own_guard_agrees_with_kongs_normalization_on_dot_segments_and_slashes(items, pair):
    path, variant = pair
    if "%" in variant:
        return  # percent-decoding is Kong's job; the guard only removes dot segments and slashes
    rules = policy_set(items)
    assert rules.match(path=variant, method="GET").name == rules.match(path=normalize(variant, True), method="GET").name
