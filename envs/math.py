"""Single-turn math word problems with a verifiable reward (math-verify against the gold).

:class:`MathEnv` serves any (question, answer) dataset whose answers are numbers or LaTeX — the
MATH benchmark, MATH-500, your own jsonl — and :class:`~llm_gym.envs.gsm8k.GSM8KEnv` is the same
machinery with GSM8K's defaults. Gold answers are checked with math-verify when the dataset
loads, so a bad row fails at construction, naming the row, never as a silent zero in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_gym.data import load_rows
from llm_gym.rewards.math import MathResult, check_golds, gold_answer, grade_batch
from llm_gym.token_env import EndedTurn, Task, TokenEnv, TurnResult, chat_messages
from llm_gym.tokenizers import Tokenizer, load_tokenizer

REWARD_MODES = ("strict", "lenient")
DEFAULT_SYSTEM_PROMPT = "You are a careful assistant who solves math problems step by step."
MATH_INSTRUCTION = "Reason step by step, then put your final answer within \\boxed{}."
_LONGEST_PROBES = 16  # prompts tokenized exactly to size max_length (the longest by bytes)


@dataclass(frozen=True)
class MathDataset:
    """Loaded, validated items: questions and their gold final answers (unwrapped)."""

    questions: tuple[str, ...]
    golds: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.questions)


def prepare_dataset(
    rows: Any, question_column: str, answer_column: str, source: str
) -> MathDataset:
    """Validate rows and unwrap gold answers; raise ``ValueError`` naming the first bad rows.

    Example:
        >>> data = prepare_dataset([{"q": "1+1?", "a": "#### 2"}], "q", "a", "inline")
        >>> data.golds
        ('2',)
    """
    if isinstance(rows, list):
        rows = load_rows(dataset=rows, columns=[question_column, answer_column])
    questions, golds = list(rows[question_column]), list(rows[answer_column])
    bad = [f"row {i}: question {q!r} is not a non-empty string" for i, q in enumerate(questions)
           if not isinstance(q, str) or not q.strip()]
    for i, gold in enumerate(golds):
        if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
            bad.append(f"row {i}: {answer_column!r} is {type(gold).__name__}, not text")
    if not bad:
        problems = check_golds(golds)
        bad = [f"row {i}: {problem}" for i, problem in enumerate(problems) if problem]
    if bad:
        more = f" (and {len(bad) - 3} more rows)" if len(bad) > 3 else ""
        raise ValueError(
            f"{source}: {'; '.join(bad[:3])}{more}. Fix or drop these rows, or point "
            "question_column=/answer_column= at the right columns"
        )
    return MathDataset(tuple(questions), tuple(gold_answer(g) for g in golds), source)


class MathEnv(TokenEnv):
    r"""Solve one math problem; the final answer is checked with math-verify.

    ## Description
    A single-turn token env over a (question, answer) dataset. The prompt is an optional system
    message plus the question followed by the instruction, rendered with the tokenizer's chat
    template; the agent writes its solution and ends the turn. Defaults load MATH-500
    (`HuggingFaceH4/MATH-500`, split `test`); any dataset with LaTeX or numeric answers works.

    ## Action Space
    `Discrete(vocab_size)`: one token per step.

    ## Observation Space
    `Dict` of `input_ids`, `attention_mask`, `agent_mask`, each of shape `(max_length,)`.

    ## Rewards
    On the end-of-turn token: 1 if the final answer equals the gold (math-verify), else 0.
    `reward_mode="strict"` needs the answer in `\boxed{}` or after `####`; `"lenient"` also
    takes "the answer is x". Several different final answers, an echo of the question, or an
    answer that fails a safety check score 0 (see :mod:`llm_gym.rewards.math`). A reply cut
    off at `max_new_tokens` scores 0. Every other step: 0.

    ## Episode End
    Terminated when the agent ends its turn; truncated when the reply reaches `max_new_tokens`.

    ## Arguments
    * `path` / `name` / `split`: hub dataset (used when neither `data_files` nor `dataset`).
    * `data_files`: local jsonl/json/csv/parquet file(s) with the same columns.
    * `dataset`: a `datasets.Dataset` or a list of dicts.
    * `question_column` / `answer_column`: default the first of `question`/`problem` and
      `answer`/`solution` present (a full solution works: its last `\boxed{}` is the gold).
    * `system_prompt`, `instruction`: the prompt text (`None` or `""` leaves a part out).
    * `reward_mode`: `"strict"` (default) or `"lenient"`.
    * `max_length` (None): sized to the longest prompt plus `max_new_tokens`.
    * `tokenizer`, `max_new_tokens` (512), `render_mode`.

    `info` at the end of the turn holds `verdict`, `extracted` (the final answer found, `""`
    when none), `gold`, and `correct`/`success` (the same bool).

    ## Version History
    * v0: initial version.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/Math-v0", dataset=[{"question": "2+3?", "answer": "5"}])
        >>> obs, info = env.reset(seed=0)
        >>> tok = env.unwrapped.tokenizer
        >>> for t in tok.encode("2+3 = \\boxed{5}") + [tok.eos_token_id]:
        ...     obs, reward, terminated, truncated, info = env.step(t)
        >>> reward, info["verdict"]
        (1.0, 'correct')
    """

    default_path: str | None = "HuggingFaceH4/MATH-500"
    default_name: str | None = None
    default_split = "test"
    default_instruction = MATH_INSTRUCTION
    question_columns = ("question", "problem")
    answer_columns = ("answer", "solution")

    def __init__(
        self,
        tokenizer: str | Tokenizer | Any | None = None,
        path: str | None = None,
        name: str | None = None,
        split: str | None = None,
        data_files: str | Sequence[str] | None = None,
        dataset: Any = None,
        question_column: str | None = None,
        answer_column: str | None = None,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        instruction: str | None = None,
        reward_mode: str = "strict",
        max_length: int | None = None,
        max_new_tokens: int = 512,
        render_mode: str | None = None,
    ) -> None:
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be 'strict' or 'lenient', got {reward_mode!r}")
        self.system_prompt = system_prompt or ""
        self.instruction = self.default_instruction if instruction is None else instruction
        self.reward_mode = reward_mode
        if isinstance(dataset, MathDataset):
            self.data = dataset  # shared by a vector env's first sub-env: no reload
        else:
            self.data = self._load(path, name, split, data_files, dataset, question_column,
                                   answer_column)
        tokenizer = load_tokenizer(tokenizer)
        if max_length is None:
            max_length = self._longest_prompt(tokenizer) + max_new_tokens
        super().__init__(tokenizer, max_length, max_new_tokens, render_mode)

    # ------------------------------------------------------------------ data
    def _load(self, path: str | None, name: str | None, split: str | None, data_files: Any,
              dataset: Any, question_column: str | None,
              answer_column: str | None) -> MathDataset:
        if data_files is None and dataset is None:
            path = path or self.default_path
            name = name if path != self.default_path else (name or self.default_name)
        rows = load_rows(path, name, split=split or self.default_split, data_files=data_files,
                         dataset=dataset)
        question_column = question_column or self._pick(rows, self.question_columns, "question")
        answer_column = answer_column or self._pick(rows, self.answer_columns, "answer")
        rows = load_rows(dataset=rows, columns=[question_column, answer_column])
        source = data_files or ("in-memory dataset" if dataset is not None else path)
        return prepare_dataset(rows, question_column, answer_column, str(source))

    @staticmethod
    def _pick(rows: Any, candidates: Sequence[str], what: str) -> str:
        for column in candidates:
            if column in rows.column_names:
                return column
        raise ValueError(
            f"no {what} column among {list(candidates)} in columns {rows.column_names}; pass "
            f"{what}_column="
        )

    def _longest_prompt(self, tokenizer: Tokenizer) -> int:
        order = sorted(range(len(self.data)), key=lambda i: -len(self.data.questions[i].encode()))
        return max(len(tokenizer.prompt_tokens(self.messages(self.data.questions[i])))
                   for i in order[:_LONGEST_PROBES])

    def messages(self, question: str) -> list[dict[str, str]]:
        """The chat messages that pose ``question`` (system prompt, question + instruction)."""
        content = f"{question}\n\n{self.instruction}" if self.instruction else question
        return chat_messages(content, self.system_prompt)

    @property
    def num_tasks(self) -> int:
        """Number of items; ``reset(options={"index": i})`` takes ``0 <= i < num_tasks``."""
        return len(self.data)

    def shared_kwargs(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "dataset": self.data, "data_files": None,
                "max_length": self.max_length}

    # ------------------------------------------------------------------ scoring
    def score_responses(
        self, indices: Sequence[int], responses: Sequence[str]
    ) -> list[MathResult]:
        r"""Grade replies to items ``indices`` in one batch (what ``llm-gym eval`` uses).

        Example:
            >>> from llm_gym.envs.math import MathEnv
            >>> env = MathEnv(dataset=[{"question": "2+3?", "answer": "5"}])
            >>> env.score_responses([0], ["\\boxed{5}"])[0].verdict
            'correct'
        """
        golds = [self.data.golds[i] for i in indices]
        prompts = [self.data.questions[i] for i in indices]
        return grade_batch(list(responses), golds, strict=self.reward_mode == "strict",
                           prompts=prompts)

    def sample_task(self, index: int | None) -> Task:
        if index is None:
            index = int(self.np_random.integers(len(self.data)))
        question = self.data.questions[index]
        return Task(messages=self.messages(question), answer=self.data.golds[index], index=index,
                    metadata={"question": question})

    def end_turn(self, response: str, response_ids: list[int], finished: bool) -> TurnResult:
        return self.end_turns([EndedTurn(self, response, response_ids, finished)])[0]

    def end_turns(self, turns: Sequence[EndedTurn]) -> list[TurnResult]:
        """Grade every finished reply of a vector env's step in one :func:`grade_batch` call.

        The worker pool grades them in parallel; a turn cut at the token budget is no answer.
        """
        answered = [t for t in turns if t.finished]
        graded = iter(self.score_responses([t.env.task.index for t in answered],
                                           [t.response for t in answered]) if answered else [])
        results = []
        for turn in turns:
            task = turn.env.task
            if not turn.finished:
                # Cut off at the token budget: not an answer.
                info = {"verdict": "truncated", "extracted": "", "gold": task.answer,
                        "correct": False, "success": False}
                results.append(TurnResult(reward=0.0, terminated=False, truncated=True,
                                          info=info))
                continue
            result = next(graded)
            correct = result.verdict == "correct"
            # "" for no answer, never None: clients that stack infos into arrays (TorchRL's
            # GymEnv) cannot type a None (issue 21); Arithmetic-v0 reports it the same way.
            extracted = "" if result.answer is None else str(result.answer)
            info = {"verdict": result.verdict, "extracted": extracted, "gold": task.answer,
                    "correct": correct, "success": correct}
            results.append(TurnResult(reward=result.reward, terminated=True, info=info))
        return results

def make_vec(num_envs: int, **kwargs: Any):
    """Vector entry point: ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")``."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(MathEnv, num_envs, **kwargs)
