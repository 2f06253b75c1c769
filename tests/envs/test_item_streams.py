"""llm_gym.envs.item_streams: the same numbers as numpy's SeedSequence, PCG64 and integers."""

from __future__ import annotations

import random

import numpy as np
import pytest

from llm_gym.envs.item_streams import (
    MAX_ENTROPY_WORDS,
    AttemptSeeds,
    ItemStream,
    seed_words,
    small_draws,
)

EDGE_VALUES = [0, 1, 2**31 - 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64, 2**100 + 5]


def _entropies(count: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        size = rng.randint(1, 7)
        out.append([rng.choice([rng.choice(EDGE_VALUES), rng.randrange(2**31),
                                rng.randrange(2**200)]) for _ in range(size)])
    return out


@pytest.mark.parametrize("entropy", [[0], [0, 0, 0], [0, 5, 0], [7, 2**31, 3], [1, 2, 3, 4, 5],
                                     *[[v] for v in EDGE_VALUES]])
def test_seed_words_match_seed_sequence(entropy):
    expected = np.random.SeedSequence(entropy).generate_state(4, np.uint64).tolist()
    assert list(seed_words(entropy)) == expected


def test_seed_words_match_seed_sequence_on_random_entropy():
    for entropy in _entropies(2000, seed=0):
        if sum(max(1, (v.bit_length() + 31) // 32) for v in entropy) > MAX_ENTROPY_WORDS:
            with pytest.raises(ValueError, match="longer than"):
                seed_words(entropy)
            continue
        expected = np.random.SeedSequence(entropy).generate_state(4, np.uint64).tolist()
        assert list(seed_words(entropy)) == expected, entropy


def test_negative_entropy_raises_like_numpy():
    with pytest.raises(ValueError):
        np.random.SeedSequence([0, -1])
    with pytest.raises(ValueError, match="non-negative"):
        seed_words([0, -1])


def _ranges(rng: random.Random) -> tuple[int, int]:
    kind = rng.random()
    if kind < 0.4:
        return 0, rng.randint(1, 12)  # operator draws, single values included
    if kind < 0.7:
        low = rng.randrange(-1000, 1000)
        return low, low + rng.randint(1, 10**rng.randint(1, 9))
    if kind < 0.8:
        return rng.choice([(0, 2**32), (-(2**63), 2**63), (5, 5 + 2**32 + 1), (0, 2**63)])
    low = rng.randrange(-(2**62), 2**62)
    return low, low + rng.randint(2**32, 2**62)  # 64-bit Lemire


def test_integers_continue_one_stream_like_a_generator():
    rng = random.Random(1)
    for entropy in _entropies(1500, seed=1):
        stream, generator = ItemStream(entropy), np.random.default_rng(entropy)
        for _ in range(rng.randint(1, 4)):
            low, high, size = *_ranges(rng), rng.randint(1, 6)
            assert stream.integers(low, high, size) == generator.integers(
                low, high, size=size).tolist(), (entropy, low, high, size)


def test_integers_reject_ranges_numpy_rejects():
    stream = ItemStream([0])
    for low, high in [(5, 5), (0, 2**63 + 1), (-(2**63) - 1, 0)]:
        with pytest.raises(ValueError):
            np.random.default_rng([0]).integers(low, high, size=1)
        with pytest.raises(ValueError):
            stream.integers(low, high, 1)


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, 2**32, 2**45 + 3])
def test_attempt_seeds_match_seed_words(seed):
    seeds = AttemptSeeds(seed)
    for index in [0, 9, 2**31 - 2, 2**32 - 1, 2**32, 2**50]:
        attempts = seeds.attempts(index)
        for attempt in range(AttemptSeeds.TABLE + 3):  # past the table of first attempts too
            assert next(attempts) == seed_words([seed, index, attempt]), (seed, index, attempt)


def test_small_draws_match_a_generator():
    rng = random.Random(4)
    for entropy in _entropies(1500, seed=4):
        if sum(max(1, (v.bit_length() + 31) // 32) for v in entropy) > MAX_ENTROPY_WORDS:
            continue
        calls = [(*_ranges(rng), rng.randint(1, 5)) for _ in range(rng.randint(1, 3))]
        generator = np.random.default_rng(entropy)
        expected = [generator.integers(low, high, size=size).tolist()
                    for low, high, size in calls]
        assert small_draws(seed_words(entropy), calls) == expected, (entropy, calls)
