"""The README's Quickstart table, the demo's banner and `make demo-check` are one list of cases."""

import re

from tests.demo import CASES, KONG_PORT, instructions
from tests.support.stack import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
ROW = re.compile(r"^\| `(curl [^`]+)` \| (\d{3})\b", re.M)


def readme_rows() -> list[tuple[str, int]]:
    section = README[README.index("## Quickstart: local demo"):README.index("## Quickstart: compose")]
    return [(cmd, int(status)) for cmd, status in ROW.findall(section)]


def test_every_readme_quickstart_row_is_a_checked_case():
    kong = f"http://127.0.0.1:{KONG_PORT}"
    checked = {(case.curl(kong), case.status) for case in CASES}
    rows = readme_rows()
    assert rows, "the Quickstart table has no rows"
    missing = [row for row in rows if row not in checked]
    assert not missing, f"README rows that make demo-check does not run: {missing}"


def test_every_banner_case_is_a_readme_row():
    kong = f"http://127.0.0.1:{KONG_PORT}"
    rows = set(readme_rows())
    assert [c for c in CASES if c.in_banner and (c.curl(kong), c.status) not in rows] == []


def test_the_malformed_token_row_is_checked():
    assert any(case.token == "not.a.jwt" and case.status == 401 for case in CASES)


def test_banner_uses_the_chosen_ports():
    text = instructions("http://127.0.0.1:9200", 8100, 9300)
    assert "http://127.0.0.1:8100/api/orders" in text
    assert "http://127.0.0.1:9300" in text
    assert ":8000" not in text
