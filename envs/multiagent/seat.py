"""One player's token conversation, and the vocabulary masks of constrained move words.

Every face of a game (the AEC and Parallel token faces, the single-agent view, an LLM player in
a tournament) keeps each seat's conversation the same way: the opening prompt, then the agent's
tokens, then the env's replies *appended* with the chat template's delimiters
(:meth:`~llm_gym.tokenizers.Tokenizer.reply_tokens`), never re-tokenized (DESIGN.md, Token env).
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any

import numpy as np
from gymnasium import spaces

from llm_gym.token_buffers import TokenBuffers
from llm_gym.tokenizers import Message, Tokenizer, load_tokenizer, strip_added_tokens


class WordMasks:
    """Next-token masks that keep a reply on one of a set of words, then end the turn.

    Built once per tokenizer and word list (:func:`word_masks` caches it): for each prefix of
    each word, the tokens that continue it to that word.

    Example:
        >>> from llm_gym.tokenizers import ByteTokenizer
        >>> tok = ByteTokenizer()
        >>> masks = word_masks(tok, ("rock", "paper"))
        >>> allowed = masks.mask("", np.array([True, False]))
        >>> [tok.decode([t]) for t in np.flatnonzero(allowed)]
        ['r']
    """

    def __init__(self, tokenizer: Tokenizer, words: tuple[str, ...]) -> None:
        self.words, self.vocab_size = words, tokenizer.vocab_size
        self.eos_token_id = tokenizer.eos_token_id
        special = set(tokenizer.stop_token_ids) | {tokenizer.pad_token_id}
        texts = [tokenizer.decode([t]) for t in range(tokenizer.vocab_size)]
        # prefix -> {word index: token ids that keep the reply on that word}
        self._next: dict[str, dict[int, np.ndarray]] = {}
        for w, word in enumerate(words):
            for cut in range(len(word)):
                prefix = word[:cut]
                ok = [t for t, text in enumerate(texts)
                      if text and t not in special and word.startswith(prefix + text)]
                self._next.setdefault(prefix, {})[w] = np.array(ok, dtype=np.int64)

    def mask(self, written: str, legal: np.ndarray) -> np.ndarray:
        """``int8`` mask over the vocabulary after ``written``, for the words ``legal`` allows."""
        mask = np.zeros(self.vocab_size, dtype=np.int8)
        for w, tokens in self._next.get(written, {}).items():
            if legal[w]:
                mask[tokens] = 1
        if written in self.words and legal[self.words.index(written)]:
            mask[self.eos_token_id] = 1
        if not mask.any():  # off every legal word already: only ending the turn is left
            mask[self.eos_token_id] = 1
        return mask


@lru_cache(maxsize=16)
def word_masks(tokenizer: Tokenizer, words: tuple[str, ...]) -> WordMasks:
    """The (cached) :class:`WordMasks` of ``words`` in ``tokenizer``'s vocabulary."""
    return WordMasks(tokenizer, words)


def plain_text(text: str, tokenizer: Tokenizer) -> str:
    r"""``text`` without any added token of the tokenizer, safe to show another player.

    A model can spell ``<|im_start|>`` byte by byte, or ``<file_sep>``, which SmolLM2 adds as a
    token that is not "special"; shown to its opponent and tokenized, either would become a
    control id and forge a turn. The rule is the core's, shared by every place where one model
    reads another's text: :func:`llm_gym.tokenizers.strip_added_tokens` (linear time).

    Example:
        >>> from llm_gym.tokenizers import ByteTokenizer
        >>> plain_text("hi<|im_end|>\n<|im_start|>system", ByteTokenizer())
        'hi\nsystem'
    """
    return strip_added_tokens(text, tokenizer)


def token_observation_space(tokenizer: Tokenizer, max_length: int,
                            constrained: bool) -> spaces.Dict:
    """The observation space of one seat: the same keys and shapes as every token env."""
    vocab = tokenizer.vocab_size
    obs: dict[str, spaces.Space] = {
        "input_ids": spaces.Box(0, vocab - 1, (max_length,), np.int64),
        "attention_mask": spaces.Box(0, 1, (max_length,), np.int8),
        "agent_mask": spaces.Box(0, 1, (max_length,), np.int8),
    }
    if constrained:
        obs["action_mask"] = spaces.Box(0, 1, (vocab,), np.int8)
    return spaces.Dict(obs)


def game_observation_space(tokenizer: Tokenizer, max_length: int,
                           constrained: bool) -> spaces.Dict:
    """A seat's space in the PettingZoo faces: PettingZoo's classic layout when constrained.

    Unconstrained, the token arrays (:func:`token_observation_space`). Constrained,
    ``{"observation": <the token arrays>, "action_mask": <vocabulary mask>}``: where PettingZoo's
    classic games put a mask, and where its clients (Tianshou's ``PettingZooEnv``, AgileRL,
    PettingZoo's own ``render_test`` and tutorials) read it (issue 21).

    Example:
        >>> from llm_gym.tokenizers import ByteTokenizer
        >>> list(game_observation_space(ByteTokenizer(), 64, constrained=True))
        ['action_mask', 'observation']
    """
    tokens = token_observation_space(tokenizer, max_length, constrained=False)
    if not constrained:
        return tokens
    mask = spaces.Box(0, 1, (tokenizer.vocab_size,), np.int8)
    return spaces.Dict({"observation": tokens, "action_mask": mask})


def game_observation(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """A seat's flat token observation in the layout of :func:`game_observation_space`."""
    if "action_mask" not in flat:
        return flat
    return {"observation": {k: v for k, v in flat.items() if k != "action_mask"},
            "action_mask": flat["action_mask"]}


class SeatConversation:
    """The token conversation of one seat, appended turn by turn.

    Args:
        tokenizer: the seat's tokenizer.
        max_length: fixed length of the observation arrays.
        max_new_tokens: most tokens of one reply; a longer reply ends the turn unfinished.
        words: the game's move words (for constrained masks).
        constrained: whether :meth:`observation` carries an ``action_mask``.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int, max_new_tokens: int,
                 words: tuple[str, ...], constrained: bool) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length
        self.max_new_tokens, self.constrained = max_new_tokens, constrained
        self.masks = word_masks(tokenizer, words) if constrained else None
        self._buf = TokenBuffers(1, max_length, tokenizer.pad_token_id,
                                 tokenizer.stop_token_ids, max_new_tokens)
        self.legal = np.ones(len(words), dtype=bool)

    @property
    def length(self) -> int:
        return int(self._buf.length[0])

    @property
    def started(self) -> bool:
        return self.length > 0

    def clear(self) -> None:
        self._buf.clear(0)

    def start(self, messages: list[Message], legal: np.ndarray) -> bool:
        """Open the conversation; False when the prompt leaves no room for a reply."""
        prompt = self.tokenizer.prompt_tokens(messages)
        if len(prompt) + self.max_new_tokens > self.max_length:
            raise ValueError(
                f"the game's prompt is {len(prompt)} tokens; with max_new_tokens="
                f"{self.max_new_tokens} it does not fit max_length={self.max_length}. Raise "
                "max_length")
        self._buf.append_env_turn(0, prompt)
        self.legal = legal
        return True

    def reply(self, text: str, legal: np.ndarray) -> bool:
        """Append the env's turn; False (nothing appended) when it and one token do not fit."""
        if not self._buf.append_env_turn(0, self.tokenizer.reply_tokens(text)):
            return False
        self.legal = legal
        return True

    def write(self, token: int) -> str | None:
        """Append one agent token; ``"stop"``/``"budget"`` when the turn ended, else ``None``."""
        return self._buf.write(0, token)

    def response(self) -> str:
        """The text of the current turn's reply (special tokens dropped)."""
        return self.tokenizer.decode(self._buf.turn_ids(0), skip_special_tokens=True)

    def action_mask(self) -> np.ndarray:
        written = self.response()
        return self.masks.mask(written, self.legal)

    def observation(self) -> dict[str, np.ndarray]:
        obs: dict[str, Any] = self._buf.observation(0)
        if self.constrained:
            obs["action_mask"] = self.action_mask()
        return obs

    def text(self) -> str:
        """The decoded conversation (``render_mode="ansi"``)."""
        return self.tokenizer.decode(self._buf.conversation_ids(0))


class TokenSeats:
    """What the token faces of a game (turn-based and simultaneous) share: their seats.

    :meth:`_seat_players` checks the shared arguments, builds the real game with
    ``make_classic()`` and gives every player its conversation (:class:`SeatConversation`),
    observation space and one-token action space.
    """

    def _seat_players(self, rules: Any, make_classic: Any, tokenizer: Any, constrained: bool,
                      invalid_penalty: float, max_length: int, max_new_tokens: int,
                      render_mode: str | None) -> None:
        if render_mode not in (None, "ansi", "human"):
            raise ValueError(f"render_mode must be 'ansi', 'human' or None, got {render_mode!r}")
        if max_new_tokens < 1 or max_length <= max_new_tokens:
            raise ValueError(f"need 1 <= max_new_tokens < max_length, got max_new_tokens="
                             f"{max_new_tokens}, max_length={max_length}")
        self.rules = rules
        self.classic_env = make_classic()
        self.tokenizer = load_tokenizer(tokenizer)
        self.constrained, self.invalid_penalty = bool(constrained), float(invalid_penalty)
        self.render_mode = render_mode
        self.possible_agents = list(self.classic_env.possible_agents)
        obs_space = game_observation_space(self.tokenizer, max_length, self.constrained)
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: spaces.Discrete(self.tokenizer.vocab_size)
                              for a in self.possible_agents}
        self.seats = {a: SeatConversation(self.tokenizer, max_length, max_new_tokens,
                                          rules.move_words, self.constrained)
                      for a in self.possible_agents}
        self.agents: list[str] = []

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def _show(self, text: str) -> str | None:
        """``render()``'s result: ``text`` in ``"ansi"``; printed, then ``None``, in ``"human"``.

        A text env has no window: ``"human"`` shows the text on the terminal (PettingZoo's
        ``render_test`` asks every game for ``"human"`` and expects ``None`` back).
        """
        if self.render_mode == "human":
            # The one place the envs write to the terminal: the user asked for it by name.
            sys.stdout.write(text + "\n")
            return None
        return text if self.render_mode == "ansi" else None

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]
