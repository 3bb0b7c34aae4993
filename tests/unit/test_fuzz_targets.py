"""The fuzz targets (fuzz/) under pytest: every committed seed, and a few thousand cheap
deterministic mutations of them, keep the plugin's contract. The coverage-guided runs
(`make fuzz`, fuzz/FUZZING.md) go much further; this keeps the targets themselves working and
the seeds meaningful in `make test`.
"""

from __future__ import annotations

import importlib
import random

import pytest

from fuzz import TARGETS, contract

# Mutations per target: enough to leave the seeds' happy path, small enough for CI (~1 s each).
MUTATIONS = 150


def _mutants(seeds: list[bytes], rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(MUTATIONS):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op == 1:
                data[pos:pos] = bytes([rng.choice(b"\x00\xff.=;%\n\"{}[]/\\~")])
            elif op == 2 and data:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                data[pos:pos] = data[: rng.randint(0, 16)]
        out.append(bytes(data))
    return out


@pytest.mark.parametrize("name", TARGETS)
def test_every_target_has_a_committed_seed_corpus(name):
    assert list(contract.seeds(name)), f"fuzz/corpus/{name}/ is empty"


@pytest.mark.parametrize("name", TARGETS)
def test_seeds_and_their_mutations_keep_the_contract(name):
    module = importlib.import_module(f"fuzz.{name}")
    seeds = list(module.seeds())
    for data in seeds + _mutants(seeds, random.Random(name)):
        module.one_input(data)


def test_the_verify_target_seeds_include_tokens_that_verify():
    # Otherwise mutations would never reach the checks after the signature.
    from fuzz import verify_token

    accepted = 0
    for data in verify_token.seeds():
        token = verify_token.signed(*data[1:].split(b"\x00", 1)) if data[:1] == b"\x00" else data.decode()
        try:
            verify_token.DEFAULT.verify(token)
            accepted += 1
        except Exception:  # noqa: BLE001 - counting only
            pass
    assert accepted >= 5


def test_the_contract_catches_an_echo_a_control_character_and_a_slow_input():
    with pytest.raises(contract.Violation, match="echoes"):
        contract.check_message("detail", "got zqxjkvbwmplf here", ["...zqxjkvbwmplf..."])
    with pytest.raises(contract.Violation, match="control"):
        contract.check_message("detail", "a\r\nb", [])
    import time

    def slow():
        end = time.process_time() + contract.MAX_SECONDS * 1.5
        while time.process_time() < end:
            pass

    with pytest.raises(contract.Violation, match="CPU"):
        contract.bounded(slow)
