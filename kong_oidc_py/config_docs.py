"""docs/configuration.md, generated from the option table in `config.py`.

The option table is the single source of truth, so the configuration reference is written from
it rather than by hand: the options and `policies[]` tables, the list of secret fields and the
list of options Kong Enterprise does not have all come from `OPTIONS`. The prose between them
lives here, next to the generator, so that the whole page is one generated file and a test can
compare it byte for byte (`tests/unit/test_readme.py`).

    python -m kong_oidc_py.config_docs            # rewrite docs/configuration.md (`make docs`)
    python -m kong_oidc_py.config_docs --check    # exit 1 if the file is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

from kong_oidc_py.config import OPTIONS, options_markdown
from kong_oidc_py.rules import CONFIG_RULES, POLICY_RULES, START_ONLY_RULES

REGENERATE = "make docs"
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

_HEADER = f"""\
<!-- Generated from kong_oidc_py/config.py by `{REGENERATE}` (python -m kong_oidc_py.config_docs). Do not edit by hand. -->

# Configuration

This page is generated from the option table in `kong_oidc_py/config.py`. Regenerate it with
`{REGENERATE}` (`python -m kong_oidc_py.config_docs`). `tests/unit/test_readme.py` fails if the
page here differs from the generated one. Back to the [README](../README.md).

All durations are in seconds, except `timeout` and the Redis timeouts, which are in
milliseconds. Requirement lists (`scopes_required`, `groups_required`, `roles_required`) follow
Kong Enterprise:

* each array item is an alternative (OR);
* the space-separated words inside one item are all required (AND).

For example, `["a b", "c"]` means "a and b, or c". Claim paths in `*_claim` options have one
array item per nesting level. In `upstream_headers_claims` and policy `claims` keys they are
dotted strings, where `\\.` is a literal dot.

## Options

"""

_RULES = """\
## Other rules

* **Policies.** They are tried in order, and the first match wins. A matched policy's
  requirement **replaces** the plugin-level one, so repeat any plugin-level requirement that
  should still apply. A request that matches no policy uses the plugin-level requirement
  (logged as policy `default`). `paths` items:
  * match Kong's normalized path;
  * end at a segment boundary unless they end in `/`, so `/admin` matches `/admin` and
    `/admin/x` but not `/administrators`;
  * are regexes, anchored at the start, when they begin with `~`.
* **Audience.** An instance that accepts bearer tokens (`auth_methods` contains `bearer`, the
  default) must list the audiences it accepts in `audience_required`: without it any token the
  issuer signed, for any client or API, would be accepted (RFC 9068 4). To accept every
  audience anyway, set `allow_any_audience: true`; the instance then logs a warning.
  `allow_any_audience: false` with an empty `audience_required` is refused too. A browser-only
  instance (no `bearer`) needs neither: its ID tokens are checked against `client_id`.
* **Config checks, before traffic.** Rules across several options are part of the schema the
  plugin server dumps, as Kong `entity_checks` (`kong_oidc_py/rules.py`), so Kong itself refuses
  a bad `kong.yml` when it loads it (`kong config parse kong.yml`, a DB-less start, the Admin API,
  deck), naming the field and the fix. Offline, with the Kong host emulator:
  `python -m tests.kong_host --config kong.yml --check`.
"""

_START = """  Instance start (`parse_config`) checks the same rules again, plus what a Kong schema cannot
  express:
"""

_BROKEN = """
  An instance whose config fails at start does not half-work: it logs one line at error level
  through Kong's log (`oidc: invalid configuration, every request on this plugin instance is
  refused with 500 until it is fixed: <field>: <what to do>`), once per plugin-server process,
  and answers every request with 500 and Kong's generic body, without the guard marker.
  Messages name the field, never a secret value.
* **Weaker options are said out loud.** `allow_any_audience`, `allow_insecure_issuer`,
  `ssl_verify: false`, query-string tokens, `reject_id_tokens: false`, `require_exp: false` and
  `session_cookie_secure: false` (off loopback) each log a warning once, at the first request
  (`kong.log.warn`: the plugin server's own output reaches Kong's log only at `info`, which
  Kong's default `log_level` hides).
"""


_KO = """\
## Kong Enterprise `openid-connect` users

Most option names are the same as in Kong Enterprise (see the KO column above), with these
differences:

* `client_id` and `client_secret` are strings, not arrays.
* `consumer_by` has no `custom_id`, because the PDK cannot look consumers up by it.
* `audience_required` is required for `bearer` (or `allow_any_audience: true`), and
  `reject_id_tokens` is on by default.
"""


def _names(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _wrap(text: str, indent: str = "  ", width: int = 95) -> str:
    """Hard-wrap one bullet the way the hand-written pages are wrapped (continuation indented)."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = indent + word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n".join(lines) + "\n"


def _sub(text: str) -> str:
    """A second-level bullet (the rule lists come from rules.py)."""
    return "  " + _wrap("* " + text, indent="    ", width=93)


def configuration_markdown() -> str:
    """The whole docs/configuration.md page."""
    secrets = [o.name for o in OPTIONS if o.secret]
    ko_less = [o.name for o in OPTIONS if not o.ko]
    return (
        _HEADER
        + "<!-- options:start -->\n\n"
        + options_markdown()
        + "\n<!-- options:end -->\n\n"
        + _RULES
        + "".join(_sub(f"`{r.field}`: {r.message}.") for r in CONFIG_RULES)
        + "".join(_sub(f"`policies[]{'.' + r.field if r.field else ''}`: {r.message}.") for r in POLICY_RULES)
        + "\n" + _START
        + "".join(_sub(f"`{field}`: {what}.") for field, what in START_ONLY_RULES)
        + _BROKEN
        + _wrap(f"* **Secrets.** {_names(secrets)} are marked `encrypted` and `referenceable` in the schema.")
        + "\n"
        + _KO
        + _wrap(f"* These options exist only here: {_names(ko_less)}.")
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    rest = [a for a in args if a != "--check"]
    if len(rest) > 1 or (rest and rest[0].startswith("-")):
        print("usage: python -m kong_oidc_py.config_docs [--check] [PATH]", file=sys.stderr)
        return 2
    path = Path(rest[0]) if rest else DEFAULT_PATH
    text = configuration_markdown()
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    if check:
        if current != text:
            print(f"{path} is stale: regenerate it with `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
