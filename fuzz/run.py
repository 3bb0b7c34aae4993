"""Coverage-guided fuzzing of one target with atheris (libFuzzer for Python).

    .venv/bin/python -m fuzz.run verify_token --runs 1000000
    .venv/bin/python -m fuzz.run callback --seconds 120

The package is instrumented for coverage and comparison feedback before the target is imported
(so only kong_oidc_py code steers the fuzzer). The fuzzer reads the committed seeds in
fuzz/corpus/<target>/ and writes what it learns to fuzz/.work/<target>/corpus (not committed);
a contract violation or an escaping exception stops the run and leaves the input in
fuzz/.work/<target>/crash-* (replay it with `--replay FILE`). libFuzzer prints `cov:` (edges)
and `ft:` (features) as it goes and the executions at the end (`stat::number_of_executed_units`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from fuzz import TARGETS

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work"
# Long enough to cross every size limit a target guards (max_token_size is 8192 by default).
MAX_LEN = 9000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--runs", type=int, default=0, help="stop after this many executions (0: no limit)")
    parser.add_argument("--seconds", type=int, default=0, help="stop after this long (0: no limit)")
    parser.add_argument("--replay", type=Path, help="run one input file through the target and report")
    args, extra = parser.parse_known_args(argv)

    if args.replay is not None:
        module = importlib.import_module(f"fuzz.{args.target}")
        module.one_input(args.replay.read_bytes())
        print("no violation")
        return

    import atheris

    # Third-party modules first, uninstrumented: only our code should steer the fuzzer.
    for name in ("cryptography.hazmat.primitives.serialization", "jwt", "httpx", "msgpack", "cachetools",
                 "tests.kong_host.pdk"):
        importlib.import_module(name)
    # Comparison feedback for str (==, startswith, ...). atheris' RegEx hook is left off: it
    # breaks re.compile() of an already compiled pattern, which httpx does for every client.
    atheris.enabled_hooks.add("str")
    # config.py stays uninstrumented: atheris 2.3 on Python 3.11 miscompiles its
    # `len(value) < (1 if ... else ...)` (every string option then "too short"), which would
    # make every config look invalid. config_map still checks the contract there, without
    # coverage feedback from config.py itself.
    with atheris.instrument_imports(include=["kong_oidc_py"], exclude=["kong_oidc_py.config"]):
        module = importlib.import_module(f"fuzz.{args.target}")

    work = WORK / args.target
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = ROOT / "corpus" / args.target
    flags = [f"-artifact_prefix={work}/", f"-max_len={MAX_LEN}", "-print_final_stats=1", "-rss_limit_mb=3072",
             "-timeout=10"]
    if args.runs:
        flags.append(f"-runs={args.runs}")
    if args.seconds:
        flags.append(f"-max_total_time={args.seconds}")
    atheris.Setup([sys.argv[0], *flags, *extra, str(corpus), str(seeds)], module.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
