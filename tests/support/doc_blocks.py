"""The YAML blocks the documentation gives readers to copy: `<!-- recipe:NAME -->` (one plugin
`config:`) and `<!-- kong.yml:NAME -->` (a whole declarative file), directly followed by a
```yaml fence, wherever they live (README.md or a page under docs/)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"<!-- (recipe|kong\.yml):([a-z0-9-]+) -->\n```yaml\n(.*?)\n```", re.S)


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def blocks(kind: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for page in _pages():
        for k, name, body in _BLOCK.findall(page.read_text(encoding="utf-8")):
            if k == kind:
                assert name not in found, f"duplicate {kind} marker {name}"
                found[name] = body
    return found


def recipes() -> dict[str, dict]:
    """name -> the recipe's plugin config."""
    return {name: yaml.safe_load(body)["config"] for name, body in blocks("recipe").items()}


def kong_ymls() -> dict[str, str]:
    return blocks("kong.yml")
