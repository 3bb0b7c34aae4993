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
* **Config checks.** `parse_config` checks the whole config when an instance starts, including
  cross-field rules:
  * HS* algorithms need `hmac_secret`;
  * `authorization_code` needs `client_id`, `client_secret`, `redirect_uri` and `openid` in
    `scopes`;
  * `SameSite=None` needs `Secure`;
  * `upstream_headers_names` must not include hop-by-hop headers or `Host`.

  A bad config makes the instance fail to start. Kong then answers 500 on that route, and the
  error names the field, never a secret value.
"""

_KO = """\
## Kong Enterprise `openid-connect` users

Most option names are the same as in Kong Enterprise (see the KO column above), with these
differences:

* `client_id` and `client_secret` are strings, not arrays.
* `consumer_by` has no `custom_id`, because the PDK cannot look consumers up by it.
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
