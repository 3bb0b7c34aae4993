"""Flag quadratic behaviour: each target on crafted inputs of size n and 8n.

    .venv/bin/python -m fuzz.scaling

A linear parser takes about 8x as long on the 8x input; a quadratic one about 64x. The inputs
repeat what a parser loops over (cookie pairs, chunk names, query parameters, dot segments,
JSON nesting and members, msgpack arrays). Run by `make fuzz` (timing belongs to fuzzing and
benchmarks, not to `make test`); a ratio above LIMIT fails. Best of several runs, CPU time.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Callable

LIMIT = 24.0  # well above 8 (linear, with noise), well below 64 (quadratic)
SMALL = 1000


def _cases() -> dict[str, Callable[[int], bytes]]:
    return {
        "verify_token": lambda n: b"eyJ" + b"A" * (n * 4) + b".eyJ.sig",
        "extract_token": lambda n: b"7Cookie: " + b"; ".join(b"c%d=v" % i for i in range(n)) + b"\n?" + b"&".join(b"a=%d" % i for i in range(n)),
        "session_cookie": lambda n: b"\x00" + b"; ".join(b"session_%d=AAAA" % i for i in range(n)),
        "callback": lambda n: b"&".join(b"state=%d" % i for i in range(n)) + b"\n" + b"; ".join(b"authorization_%d=x" % i for i in range(n)),
        "discovery": lambda n: json.dumps({"issuer": "x", "k": [[i] for i in range(n)]}).encode(),
        "jwks": lambda n: json.dumps({"keys": [{"kty": "EC", "crv": "P-999", "kid": str(i)} for i in range(n // 4)]}).encode(),
        "token_response": lambda n: b"\x00" + json.dumps({"access_token": "a", "token_type": "Bearer", "x": list(range(n))}).encode(),
        "policy_match": lambda n: b"GET\n" + b"/./a" * n,
        "config_map": lambda n: json.dumps({"issuer": "https://idp.example.com", "audience_required": [str(i) for i in range(n)]}).encode(),
        "plugin_msgpack": lambda n: b"\xdc" + n.to_bytes(2, "big") + b"\x91" * n,
    }


def _cpu(fn: Callable[[], None], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main() -> int:
    failed = 0
    for name, make in _cases().items():
        module = importlib.import_module(f"fuzz.{name}")
        small, large = make(SMALL), make(SMALL * 8)

        def run(data: bytes) -> None:
            try:
                module.one_input(data)
            except AssertionError:
                pass  # the contract's own time bound may trip on the large input; we measure

        t_small, t_large = _cpu(lambda: run(small)), _cpu(lambda: run(large))
        ratio = t_large / max(t_small, 1e-6)
        verdict = "ok" if ratio <= LIMIT or t_large < 0.002 else "QUADRATIC?"
        failed += verdict != "ok"
        print(f"{name:16} {len(small):7d} B {t_small * 1000:8.2f} ms   {len(large):7d} B {t_large * 1000:8.2f} ms   x{ratio:5.1f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
