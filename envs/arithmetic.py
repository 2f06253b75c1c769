"""Procedural integer arithmetic: the task a small model can learn on a CPU.

Items follow reasoning-gym's shape (``{question, answer, metadata}``) and item ``i`` is a pure
function of ``(dataset_seed, split, i)``, so ``reset(options={"index": i})`` always poses the same
question. The train and test splits partition the *questions* (by a stable hash of the question
text), so a model evaluated on ``split="test"`` has never been rewarded on those questions.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from llm_gym.envs.item_streams import AttemptSeeds, small_draws
from llm_gym.token_env import Task, TokenEnv, TurnResult
from llm_gym.tokenizers import Tokenizer, load_tokenizer

SPLITS = ("train", "test", "all")
OPERATIONS = "+-*"
MAX_ATTEMPTS = 10_000  # rejection sampling budget per item (split and sign filters)
MAX_ANSWER_DIGITS = 200  # longer digit runs are never parsed (int() of 10**6 digits is slow)

# An optionally signed integer not glued to other digits, a decimal point or a letter; thousands
# separators ("1,000") are accepted. "−" (U+2212) counts as a minus sign.
_INTEGER_RE = re.compile(r"(?<![\w.,])([-\u2212]?)(\d{1,3}(?:,\d{3})+|\d+)(?![\w]|[.,]\d)")


def extract_integer(response: str) -> int | None:
    """The last integer written in ``response``, or ``None`` when there is none.

    Nothing is evaluated: the text is matched with one linear regular expression. A number glued
    to a decimal part (``7.5``) or to letters (``x2``) is not an integer; a digit run longer
    than ``MAX_ANSWER_DIGITS`` is ignored.

    Example:
        >>> extract_integer("3 + 4 = 7.")
        7
        >>> extract_integer("The answer is -1,024")
        -1024
        >>> extract_integer("no idea") is None
        True
    """
    last = None
    for match in _INTEGER_RE.finditer(response):
        last = match
    if last is None:
        return None
    digits = last.group(2).replace(",", "")
    if len(digits) > MAX_ANSWER_DIGITS:
        return None
    value = int(digits)
    return -value if last.group(1) else value


def evaluate(operands: list[int], operators: list[str]) -> int:
    """Value of ``operands[0] op operands[1] ...`` with ``*`` binding tighter than ``+``/``-``."""
    total, term, sign = 0, operands[0], 1
    for op, value in zip(operators, operands[1:], strict=True):
        if op == "*":
            term *= value
        else:
            total += sign * term
            term, sign = value, (1 if op == "+" else -1)
    return total + sign * term


class ArithmeticEnv(TokenEnv):
    """Answer one integer arithmetic question, e.g. ``What is 7 - 3?``.

    ## Description
    A single-turn token env. The prompt is one short user message; the agent writes a reply and
    ends its turn. Questions are generated, never loaded: no dataset, no network.

    ## Action Space
    `Discrete(vocab_size)`: one token per step.

    ## Observation Space
    `Dict` of `input_ids`, `attention_mask`, `agent_mask`, each of shape `(max_length,)`.

    ## Rewards
    On the end-of-turn token: 1 if the **last integer** in the reply equals the answer, else 0
    (see :func:`extract_integer`; "7", "3 + 4 = 7" and "The answer is 7." all score). A reply
    cut off at `max_new_tokens` scores 0. Every other step: 0.

    ## Episode End
    Terminated when the agent ends its turn; truncated when the reply reaches `max_new_tokens`.

    ## Arguments
    * `digits` (1): digits per operand; 1-digit operands are 0-9, d-digit ones 10^(d-1)..10^d-1.
    * `operations` ("+-"): the operators drawn from, a subset of "+-*" (`*` binds tighter).
    * `num_terms` (2): operands per question.
    * `allow_negative` (False): whether answers may be negative (else questions are redrawn).
    * `split` ("train"): "train", "test" or "all". The splits partition questions by a hash of
      their text; `test_fraction` (0.2) of questions are test questions.
    * `dataset_seed` (0): selects the item sequence; item `i` depends only on it, the split and
      `i`.
    * `num_tasks` (None): `None` for an unbounded item sequence (an unpinned reset draws any
      index); an int restricts the env to items `0..num_tasks-1` (a fixed training pool).
    * `max_length` (None): observation length; `None` sizes it to the longest possible prompt
      plus `max_new_tokens` (79 tokens with the byte tokenizer and the defaults).
    * `tokenizer`, `max_new_tokens` (16), `render_mode`.

    `info` at the end of the turn holds `correct` (and `success`, the same), `extracted` (the
    parsed integer as a string, `""` when none) and `answer` (a string; `env.task.answer` is the
    int).

    ## Version History
    * v0: initial version.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/Arithmetic-v0")
        >>> obs, info = env.reset(seed=0, options={"index": 3})
        >>> task = env.unwrapped.task
        >>> tok = env.unwrapped.tokenizer
        >>> for t in tok.encode(str(task.answer)) + [tok.eos_token_id]:
        ...     obs, reward, terminated, truncated, info = env.step(t)
        >>> reward, info["correct"]
        (1.0, True)
    """

    def __init__(
        self,
        tokenizer: str | Tokenizer | Any | None = None,
        digits: int = 1,
        operations: str = "+-",
        num_terms: int = 2,
        allow_negative: bool = False,
        split: str = "train",
        test_fraction: float = 0.2,
        dataset_seed: int = 0,
        num_tasks: int | None = None,
        max_length: int | None = None,
        max_new_tokens: int = 16,
        render_mode: str | None = None,
    ) -> None:
        self._check_config(digits, operations, num_terms, split, test_fraction, num_tasks)
        tokenizer = load_tokenizer(tokenizer)  # once: super() keeps the loaded object
        if max_length is None:
            longest = " + ".join(["9" * digits] * num_terms)
            prompt = tokenizer.prompt_tokens(self._messages(longest))
            max_length = len(prompt) + max_new_tokens
        super().__init__(tokenizer, max_length, max_new_tokens, render_mode)
        self.digits = int(digits)
        self.operations = "".join(dict.fromkeys(operations))
        self.num_terms = int(num_terms)
        self.allow_negative = bool(allow_negative)
        self.split = split
        self.test_fraction = float(test_fraction)
        self.dataset_seed = int(dataset_seed)
        self._seeds = AttemptSeeds(self.dataset_seed)
        self._num_tasks = None if num_tasks is None else int(num_tasks)
        low = 0 if self.digits == 1 else 10 ** (self.digits - 1)
        self._operand_range = (low, 10**self.digits)

    @staticmethod
    def _check_config(digits: int, operations: str, num_terms: int, split: str,
                      test_fraction: float, num_tasks: int | None) -> None:
        if not isinstance(digits, int) or digits < 1:
            raise ValueError(f"digits must be an int >= 1, got {digits!r}")
        if not isinstance(operations, str) or not operations or set(operations) - set(OPERATIONS):
            raise ValueError(f"operations must be a non-empty subset of {OPERATIONS!r}, "
                             f"got {operations!r}")
        if not isinstance(num_terms, int) or num_terms < 2:
            raise ValueError(f"num_terms must be an int >= 2, got {num_terms!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
        if num_tasks is not None and (isinstance(num_tasks, bool) or num_tasks < 1):
            raise ValueError(f"num_tasks must be None (unbounded) or an int >= 1, "
                             f"got {num_tasks!r}")

    @property
    def num_tasks(self) -> int | None:
        """Items ``options={'index': i}`` accepts: ``None`` means every ``i >= 0``."""
        return self._num_tasks

    # ------------------------------------------------------------------ items
    def item(self, index: int) -> dict[str, Any]:
        """Item ``index`` as ``{"question", "answer", "metadata"}`` (pure function of index).

        Example:
            >>> from llm_gym.envs.arithmetic import ArithmeticEnv
            >>> ArithmeticEnv().item(0) == ArithmeticEnv().item(0)
            True
        """
        if self._seeds.seed != self.dataset_seed:  # the attribute was changed after __init__
            self._seeds = AttemptSeeds(self.dataset_seed)
        low, high = self._operand_range
        operations, num_terms = self.operations, self.num_terms
        calls = ((low, high, num_terms), (0, len(operations), num_terms - 1))
        # The draws of np.random.default_rng([dataset_seed, index, attempt]).integers, made
        # without building a Generator per attempt (issue 24: that cost ~30 µs an attempt).
        for attempt, words in zip(range(MAX_ATTEMPTS), self._seeds.attempts(index),
                                  strict=False):
            operands, op_ids = small_draws(words, calls)
            ops = [operations[k] for k in op_ids]
            answer = evaluate(operands, ops)
            if answer < 0 and not self.allow_negative:
                continue
            question = " ".join([str(operands[0])] + [f"{o} {v}" for o, v in
                                                      zip(ops, operands[1:], strict=True)])
            if self._in_split(question):
                return {"question": question, "answer": answer,
                        "metadata": {"index": index, "split": self.split, "operands": operands,
                                     "operators": ops, "attempt": attempt}}
        raise ValueError(
            f"no question with digits={self.digits}, operations={self.operations!r}, "
            f"num_terms={self.num_terms} fits split={self.split!r} and allow_negative="
            f"{self.allow_negative} in {MAX_ATTEMPTS} draws; set allow_negative=True or use "
            "fewer terms"
        )

    def question_split(self, question: str) -> str:
        """``"test"`` or ``"train"``: the split a question belongs to (a stable hash of it)."""
        bucket = zlib.crc32(f"{self.dataset_seed}:{question}".encode()) % 10_000
        return "test" if bucket < self.test_fraction * 10_000 else "train"

    def _in_split(self, question: str) -> bool:
        return self.split == "all" or self.question_split(question) == self.split

    # ------------------------------------------------------------------ TokenEnv hooks
    def sample_task(self, index: int | None) -> Task:
        if index is None:
            high = self._num_tasks if self._num_tasks is not None else 2**31 - 1
            index = int(self.np_random.integers(high))
        item = self.item(index)
        return Task(messages=self._messages(item["question"]), answer=item["answer"],
                    index=index, metadata={"question": item["question"], **item["metadata"]})

    @staticmethod
    def _messages(question: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"What is {question}? Answer with a single integer."}]

    def end_turn(self, response: str, response_ids: list[int], finished: bool) -> TurnResult:
        answer = self.task.answer if self.task is not None else None
        extracted = extract_integer(response) if finished else None
        correct = extracted is not None and extracted == answer
        # Strings, not ints: vector envs batch info by the first value's type (None would not
        # fit an int array) and products of many digits overflow int64.
        info = {"correct": correct, "success": correct,
                "extracted": "" if extracted is None else str(extracted), "answer": str(answer)}
        # A reply cut off at the token budget is not an answer: the episode is truncated.
        return TurnResult(reward=float(correct), terminated=finished, truncated=not finished,
                          info=info)


def make_vec(num_envs: int, **kwargs: Any):
    """Vector entry point: ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")``."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(ArithmeticEnv, num_envs, **kwargs)
