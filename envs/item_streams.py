"""Per-item random streams, drawn exactly as ``np.random.default_rng([...]).integers`` draws.

Procedural envs make item ``i`` a pure function of ``(dataset_seed, i, attempt)`` by seeding a
fresh generator per item (reasoning-gym's per-index seeding). Building that generator costs
more than the item: ``default_rng`` runs a ``SeedSequence``, a ``PCG64`` and a ``Generator``
(about 14 µs), and each small ``integers(..., size=n)`` call about 7 µs more (issue 24). An
item needs a handful of 32-bit draws, so :class:`ItemStream` redoes numpy's arithmetic in plain
Python integers — ``SeedSequence`` mixing, ``PCG64`` (XSL-RR 128/64) seeding and stepping, and
Lemire's bounded integers with the bit generator's 32-bit buffer — at a fraction of the cost,
giving the very same numbers (tests compare it with numpy on many seeds and ranges).

Sources: numpy ``random/bit_generator.pyx`` (SeedSequence), ``random/src/pcg64``,
``random/src/distributions/distributions.c`` (``random_bounded_uint64_fill``); Lemire, "Fast
Random Integer Generation in an Interval" (2019).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

MASK32 = 0xFFFF_FFFF
MASK64 = (1 << 64) - 1
MASK128 = (1 << 128) - 1
INT64_MAX = (1 << 63) - 1
POOL_SIZE = 4  # SeedSequence's default pool of 32-bit words
# SeedSequence's hash constants (numpy/random/bit_generator.pyx).
INIT_A, MULT_A = 0x43B0D7E5, 0x931E8875
INIT_B, MULT_B = 0x8B51F9DD, 0x58F38DED
MIX_MULT_L, MIX_MULT_R = 0xCA01F9DD, 0x4973F715
PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645  # PCG_DEFAULT_MULTIPLIER_128


def _hash_constants(init: int, mult: int, count: int) -> tuple[int, ...]:
    out, value = [], init
    for _ in range(count):
        out.append(value)
        value = (value * mult) & MASK32
    return tuple(out)


# hashmix number k xors with A[k] and multiplies by A[k + 1]; generate_state's word k
# xors with B[k] and multiplies by B[k + 1].
_A = _hash_constants(INIT_A, MULT_A, 256)
_B = _hash_constants(INIT_B, MULT_B, 2 * POOL_SIZE + 1)


def _words(value: int) -> list[int]:
    """An int >= 0 as little-endian 32-bit words (``[0]`` for zero), as SeedSequence splits it."""
    if value < 0:
        raise ValueError(f"entropy must be non-negative integers, got {value}")
    if value <= MASK32:
        return [value]
    out = []
    while value:
        out.append(value & MASK32)
        value >>= 32
    return out


def _mixing_schedule() -> tuple[tuple[int, int, int, int], ...]:
    """``(src, dst, xor, mult)`` of SeedSequence's pool mixing, hash constants included."""
    steps, k = [], POOL_SIZE  # the first POOL_SIZE hashmix calls hash the entropy in
    for src in range(POOL_SIZE):
        for dst in range(POOL_SIZE):
            if src != dst:
                steps.append((src, dst, _A[k], _A[k + 1]))
                k += 1
    return tuple(steps)


_MIXING = _mixing_schedule()
_EXTRA_START = POOL_SIZE + len(_MIXING)  # hashmix calls before words past the pool are mixed
MAX_ENTROPY_WORDS = POOL_SIZE + (len(_A) - 1 - _EXTRA_START) // POOL_SIZE


def seed_words(entropy: Sequence[int]) -> tuple[int, int, int, int]:
    """``SeedSequence(list(entropy)).generate_state(4, np.uint64)`` as four Python ints.

    Example:
        >>> import numpy as np
        >>> seed_words([0, 7, 1]) == tuple(int(w) for w in
        ...     np.random.SeedSequence([0, 7, 1]).generate_state(4, np.uint64))
        True
    """
    data = list(entropy)
    if len(data) > POOL_SIZE or not all(0 <= value <= MASK32 for value in data):
        data = [w for value in data for w in _words(int(value))]  # SeedSequence's 32-bit words
    if len(data) > MAX_ENTROPY_WORDS:
        raise ValueError(f"entropy of {len(data)} 32-bit words is longer than the "
                         f"{MAX_ENTROPY_WORDS} supported")
    pool = data[:POOL_SIZE] + [0] * (POOL_SIZE - len(data))
    for i in range(POOL_SIZE):  # hashmix each word in, with the first hash constants
        value = ((pool[i] ^ _A[i]) * _A[i + 1]) & MASK32
        pool[i] = value ^ (value >> 16)
    for src, dst, xor, mult in _MIXING:  # mix every pool word into every other one
        value = ((pool[src] ^ xor) * mult) & MASK32
        mixed = (MIX_MULT_L * pool[dst] - MIX_MULT_R * (value ^ (value >> 16))) & MASK32
        pool[dst] = mixed ^ (mixed >> 16)
    k = _EXTRA_START
    for word in data[POOL_SIZE:]:  # then each word that did not fit the pool
        for dst in range(POOL_SIZE):
            value = ((word ^ _A[k]) * _A[k + 1]) & MASK32
            mixed = (MIX_MULT_L * pool[dst] - MIX_MULT_R * (value ^ (value >> 16))) & MASK32
            pool[dst] = mixed ^ (mixed >> 16)
            k += 1
    state = []
    for i in range(2 * POOL_SIZE):  # generate_state: 8 words of 32 bits, 4 of 64
        value = ((pool[i % POOL_SIZE] ^ _B[i]) * _B[i + 1]) & MASK32
        state.append(value ^ (value >> 16))
    return (state[0] | state[1] << 32, state[2] | state[3] << 32,
            state[4] | state[5] << 32, state[6] | state[7] << 32)


def _hashmix(value: int, k: int) -> int:
    """SeedSequence's ``hashmix`` number ``k`` (its hash constant advanced ``k`` times)."""
    value = ((value ^ _A[k]) * _A[k + 1]) & MASK32
    return value ^ (value >> 16)


def _mix(dst: int, hashed: int) -> int:
    value = (MIX_MULT_L * dst - MIX_MULT_R * hashed) & MASK32
    return value ^ (value >> 16)


class AttemptSeeds:
    """:func:`seed_words` of ``[seed, index, attempt]`` for one seed, index after index.

    An item draws ``default_rng([dataset_seed, index, attempt])`` for attempt 0, 1, ... until
    one fits. Most of SeedSequence's mixing depends on the seed alone or on the seed and the
    index, so it is done once per seed or once per item, not once per attempt: an attempt
    costs a third of :func:`seed_words` (issue 24). Seeds or indices of 2**32 or more (two
    32-bit words) take the general :func:`seed_words`.

    Example:
        >>> seeds = AttemptSeeds(7)
        >>> next(seeds.attempts(12)) == seed_words([7, 12, 0])
        True
    """

    TABLE = 64  # attempts whose first mixing steps are kept

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._single_word = 0 <= self.seed <= MASK32
        if not self._single_word:
            return
        # Pool word k starts as hashmix k of entropy word k ([seed, index, attempt, 0]); the
        # first round mixes hashmix(pool[0]) into words 1, 2, 3 (hashmix 4, 5, 6).
        self._p0 = _hashmix(self.seed, 0)
        self._h04, h05, h06 = (_hashmix(self._p0, k) for k in (4, 5, 6))
        self._p3 = _mix(_hashmix(0, 3), h06)
        self._p2 = tuple(_mix(_hashmix(a, 2), h05) for a in range(self.TABLE))

    def attempts(self, index: int) -> Iterator[tuple[int, int, int, int]]:
        """``seed_words([seed, index, attempt])`` for attempt 0, 1, 2, ..."""
        if not (self._single_word and 0 <= index <= MASK32):
            attempt = 0
            while True:
                yield seed_words((self.seed, index, attempt))
                attempt += 1
        # Round two mixes hashmix(pool[1]) (7, 8, 9) into words 0, 2, 3: 0 and 3 do not
        # depend on the attempt.
        p1 = _mix(_hashmix(index, 1), self._h04)
        p0 = _mix(self._p0, _hashmix(p1, 7))
        h18 = _hashmix(p1, 8)
        p3 = _mix(self._p3, _hashmix(p1, 9))
        attempt = 0
        # The loop inlines hashmix and mix (with the constants in locals): it runs per attempt.
        x10, m10, x11, m11, x12, m12, x13, m13, x14, m14, x15, m15 = _ROUNDS_3_4
        y0, n0, y1, n1, y2, n2, y3, n3, y4, n4, y5, n5, y6, n6, y7, n7 = _OUTPUT_FLAT
        left, right, mask = MIX_MULT_L, MIX_MULT_R, MASK32
        while True:
            p2 = _mix(self._p2[attempt] if attempt < self.TABLE else
                      _mix(_hashmix(attempt, 2), _hashmix(self._p0, 5)), h18)
            # Rounds three and four: hashmix(pool[2]) (10, 11, 12) into 0, 1, 3, then
            # hashmix(pool[3]) (13, 14, 15) into 0, 1, 2; then generate_state.
            h = ((p2 ^ x10) * m10) & mask
            q0 = (left * p0 - right * (h ^ (h >> 16))) & mask
            q0 ^= q0 >> 16
            h = ((p2 ^ x11) * m11) & mask
            q1 = (left * p1 - right * (h ^ (h >> 16))) & mask
            q1 ^= q1 >> 16
            h = ((p2 ^ x12) * m12) & mask
            q3 = (left * p3 - right * (h ^ (h >> 16))) & mask
            q3 ^= q3 >> 16
            h = ((q3 ^ x13) * m13) & mask
            q0 = (left * q0 - right * (h ^ (h >> 16))) & mask
            q0 ^= q0 >> 16
            h = ((q3 ^ x14) * m14) & mask
            q1 = (left * q1 - right * (h ^ (h >> 16))) & mask
            q1 ^= q1 >> 16
            h = ((q3 ^ x15) * m15) & mask
            q2 = (left * p2 - right * (h ^ (h >> 16))) & mask
            q2 ^= q2 >> 16
            # generate_state(4, np.uint64): eight hashed words, paired into four.
            w0, w1 = ((q0 ^ y0) * n0) & mask, ((q1 ^ y1) * n1) & mask
            w2, w3 = ((q2 ^ y2) * n2) & mask, ((q3 ^ y3) * n3) & mask
            w4, w5 = ((q0 ^ y4) * n4) & mask, ((q1 ^ y5) * n5) & mask
            w6, w7 = ((q2 ^ y6) * n6) & mask, ((q3 ^ y7) * n7) & mask
            yield ((w0 ^ (w0 >> 16)) | (w1 ^ (w1 >> 16)) << 32,
                   (w2 ^ (w2 >> 16)) | (w3 ^ (w3 >> 16)) << 32,
                   (w4 ^ (w4 >> 16)) | (w5 ^ (w5 >> 16)) << 32,
                   (w6 ^ (w6 >> 16)) | (w7 ^ (w7 >> 16)) << 32)
            attempt += 1


_ROUNDS_3_4 = tuple(c for k in range(10, 16) for c in (_A[k], _A[k + 1]))


_OUTPUT_FLAT = tuple(c for i in range(2 * POOL_SIZE) for c in (_B[i], _B[i + 1]))


class ItemStream:
    """The draws of ``np.random.default_rng(entropy)``, for the calls items make.

    Only :meth:`integers` with an ``int64`` result is implemented; successive calls continue
    one stream exactly as successive ``Generator.integers`` calls do (the 32-bit half of a
    64-bit draw left over by one call is used by the next).

    Example:
        >>> import numpy as np
        >>> stream, rng = ItemStream([0, 5, 0]), np.random.default_rng([0, 5, 0])
        >>> stream.integers(10, 100, 3) == rng.integers(10, 100, size=3).tolist()
        True
        >>> stream.integers(0, 2, 4) == rng.integers(2, size=4).tolist()
        True
    """

    __slots__ = ("_state", "_inc", "_spare")

    def __init__(self, entropy: Sequence[int] | None,
                 words: tuple[int, int, int, int] | None = None) -> None:
        # ``words``: the entropy's seed_words already (AttemptSeeds gives them), else derived.
        s0, s1, i0, i1 = seed_words(entropy) if words is None else words
        # pcg_setseq_128_srandom_r: state 0, step, add the initial state, step.
        self._inc = (((i0 << 64) | i1) << 1 | 1) & MASK128
        state = (self._inc + ((s0 << 64) | s1)) & MASK128
        self._state = (state * PCG_MULT + self._inc) & MASK128
        self._spare: int | None = None  # the high half of the last 64-bit draw, unused yet

    def next64(self) -> int:
        """The next 64-bit output (PCG64: step, then XSL-RR of the new state)."""
        state = self._state = (self._state * PCG_MULT + self._inc) & MASK128
        rot = state >> 122
        value = ((state >> 64) ^ state) & MASK64
        return ((value >> rot) | (value << (64 - rot))) & MASK64

    def next32(self) -> int:
        """The next 32-bit output: the low half of a 64-bit draw, then its high half."""
        if self._spare is not None:
            value, self._spare = self._spare, None
            return value
        value = self.next64()
        self._spare = value >> 32
        return value & MASK32

    def integers(self, low: int, high: int, size: int) -> list[int]:
        """``Generator.integers(low, high, size=size)`` (int64, ``high`` excluded) as a list."""
        if not (-INT64_MAX - 1 <= low < high <= INT64_MAX + 1):
            raise ValueError(f"need low < high within int64, got low={low}, high={high}")
        span = high - low - 1  # numpy's closed range
        if span == 0:
            return [low] * size
        if span == MASK32:
            return [low + self.next32() for _ in range(size)]
        if span == MASK64:
            return [low + self.next64() for _ in range(size)]
        if span < MASK32:  # the common case, inlined: items draw a few small numbers
            bound, out = span + 1, []
            for _ in range(size):
                product = self.next32() * bound
                if product & MASK32 < bound:
                    threshold = (MASK32 + 1 - bound) % bound
                    while product & MASK32 < threshold:
                        product = self.next32() * bound
                out.append(low + (product >> 32))
            return out
        return [low + self._lemire(self.next64, span + 1, 64, MASK64) for _ in range(size)]

    @staticmethod
    def _lemire(draw: object, bound: int, bits: int, mask: int) -> int:
        """A uniform int in ``[0, bound)`` by Lemire's multiply-and-reject (numpy's variant)."""
        product = draw() * bound  # type: ignore[operator]
        if product & mask < bound:
            threshold = (mask + 1 - bound) % bound
            while product & mask < threshold:
                product = draw() * bound  # type: ignore[operator]
        return product >> bits


def small_draws(words: tuple[int, int, int, int],
                calls: Sequence[tuple[int, int, int]]) -> list[list[int]]:
    """``[ItemStream(None, words).integers(low, high, size) for low, high, size in calls]``.

    The same numbers with the stream inlined (no object, no method call per number), for
    calls whose ranges are below 2**32 - 1 (the others go through :class:`ItemStream`): an
    item makes a few such calls per attempt (issue 24).

    Example:
        >>> stream = ItemStream([0, 5, 0])
        >>> small_draws(seed_words([0, 5, 0]), [(10, 100, 3), (0, 2, 4)]) == [
        ...     stream.integers(10, 100, 3), stream.integers(0, 2, 4)]
        True
    """
    for low, high, _ in calls:
        if not 0 <= high - low - 1 < MASK32:
            stream = ItemStream(None, words)
            return [stream.integers(low, high, size) for low, high, size in calls]
    s0, s1, i0, i1 = words
    inc = (((i0 << 64) | i1) << 1 | 1) & MASK128
    state = (((inc + ((s0 << 64) | s1)) & MASK128) * PCG_MULT + inc) & MASK128
    spare = -1  # the unused high half of the last 64-bit output, -1 for none
    out = []
    for low, high, size in calls:
        bound, values = high - low, []
        for _ in range(size):
            if bound == 1:  # numpy draws nothing for a single value
                values.append(low)
                continue
            while True:
                if spare >= 0:
                    draw, spare = spare, -1
                else:  # PCG64: step, then XSL-RR of the new state
                    state = (state * PCG_MULT + inc) & MASK128
                    rot = state >> 122
                    value = ((state >> 64) ^ state) & MASK64
                    value = ((value >> rot) | (value << (64 - rot))) & MASK64
                    draw, spare = value & MASK32, value >> 32
                product = draw * bound
                if product & MASK32 >= bound or product & MASK32 >= (MASK32 + 1 - bound) % bound:
                    break  # Lemire: accepted (numpy's test, in its order)
            values.append(low + (product >> 32))
        out.append(values)
    return out
