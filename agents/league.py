"""Self-play against a league of the learner's own past snapshots.

A :class:`SelfPlayLeague` is attached to an LLM trainer (GRPO and its family, or PPO) whose env
is a single-agent game view (``llm_gym/TicTacToeText-v0`` ...). It fills the opponent seat of
every row of the trainer's batch with a frozen copy of the learner, and, as a trainer hook
(:class:`~llm_gym.agents.trainer.TrainerHook`), after every ``snapshot_every`` updates adds a
snapshot of the learner's weights to a pool capped at ``pool_size`` (the oldest leaves first).
Playing a pool of past selves rather than only the latest self is what keeps self-play from
chasing its own tail: fictitious self-play best-responds to the average of past policies
(Heinrich et al. 2015), OpenAI Five played 20% of its games against past versions, and
AlphaStar's league kept frozen snapshots of its agents as opponents (Vinyals et al. 2019).

Choices:
    * **One opponent per batch**, drawn after each update for the next collect. A GRPO group
      compares the returns of one game played several times, so its rows must face the same
      opponent; one opponent per batch also means one weight copy per batch, not per move.
    * **Weights**: a mixture of the uniform draw over the pool (fictitious self-play) and the
      newest snapshot with probability ``latest_prob`` (OpenAI Five's 80/20 is
      ``latest_prob=0.8``). Uniform (``latest_prob=0``) is the default: with a small capped pool
      it already favours recent play, and it needs no win-rate bookkeeping (AlphaStar's
      prioritised sampling would).
    * **Seeded and stateless draws**: the draw after update ``u`` uses the generator seeded with
      ``(seed, u)``, and so does the opponent's token sampling for that batch, so a resumed run
      draws the same opponents and moves as the uninterrupted one.
    * The pool starts with the learner as it is when attached (update 0 of a fresh run).
    * Snapshots stay on the model's device; with LoRA only the adapter is copied. One frozen
      copy of the model plays every snapshot in turn (weights loaded when drawn).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from llm_gym.envs.multiagent.policies import AgentPolicy, random_policy

logger = logging.getLogger(__name__)

HOOK_NAME = "self_play"


@dataclass(frozen=True)
class SelfPlayConfig:
    """The league's settings (``llm-gym train --self-play JSON`` takes these names).

    Attributes:
        snapshot_every: add a snapshot of the learner after every this many updates.
        pool_size: most snapshots kept; the oldest is dropped when a new one comes.
        latest_prob: probability mass put on the newest snapshot on top of the uniform draw
            (0: uniform over the pool; 1: always the newest).
        temperature: the opponents' sampling temperature (0: greedy moves).
        seed: seed of the draws and the opponents' sampling (default: the trainer's seed).
    """

    snapshot_every: int = 10
    pool_size: int = 5
    latest_prob: float = 0.0
    temperature: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("snapshot_every", "pool_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"self-play {name} must be an integer >= 1, got {value!r}")
        for name, high in (("latest_prob", 1.0), ("temperature", float("inf"))):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0.0 <= value <= high):
                bound = "in [0, 1]" if high == 1.0 else "a number >= 0"
                raise ValueError(f"self-play {name} must be {bound}, got {value!r}")
        if self.seed is not None and (isinstance(self.seed, bool)
                                      or not isinstance(self.seed, int)):
            raise ValueError(f"self-play seed must be an integer or null, got {self.seed!r}")

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> SelfPlayConfig:
        """Parse ``'{"snapshot_every": 5, "pool_size": 4}'`` (or a dict); unknown keys fail.

        Example:
            >>> SelfPlayConfig.from_json('{"snapshot_every": 5, "pool_size": 4}').pool_size
            4
        """
        if isinstance(text, str):
            try:
                text = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"--self-play must be a JSON object, e.g. '{{\"snapshot_every\""
                                 f": 5, \"pool_size\": 4}}'; got {text!r} ({err.msg})") from None
        if not isinstance(text, dict):
            raise ValueError(f"--self-play must be a JSON object, e.g. '{{\"snapshot_every\": 5,"
                             f" \"pool_size\": 4}}'; got {text!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(text) - set(known))
        if unknown:
            raise ValueError(f"unknown self-play setting(s) {unknown}; use {known}")
        return cls(**text)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return asdict(self)


class SnapshotPlayer:
    """A frozen copy of the learner that answers ``predict(obs)`` for :class:`AgentPolicy`.

    Its weights are a snapshot loaded by the league; nothing trains it (no gradients, eval
    mode, its own parameters). Tokens are sampled at ``temperature`` with the generator the
    league seeds for each batch, inside the legal-move mask when the observation has one.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, vocab_size: int,
                 temperature: float) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.vocab_size, self.temperature = vocab_size, temperature
        self.generator = torch.Generator()

    @torch.no_grad()
    def predict(self, observation: dict[str, np.ndarray], deterministic: bool = False
                ) -> tuple[int, None]:
        """The next token of the written prefix ``observation["input_ids"]``."""
        from llm_gym.agents.sampling import device_generator, sample_tokens

        device = next(self.model.parameters()).device
        ids = torch.as_tensor(np.asarray(observation["input_ids"]), device=device)[None]
        logits = self.model(input_ids=ids).logits[:, -1, : self.vocab_size].float()
        allowed = None
        if "action_mask" in observation:
            allowed = torch.as_tensor(np.asarray(observation["action_mask"]))[None].bool()
        temperature = 0.0 if deterministic else self.temperature
        token, _ = sample_tokens(logits, temperature=temperature, allowed=allowed,
                                 generator=device_generator(self.generator, device))
        return int(token[0]), None


class SelfPlayLeague:
    """A pool of frozen snapshots of the learner, one drawn as the opponent of each batch.

    Args:
        config: a :class:`SelfPlayConfig`, a dict of its fields or their JSON.

    Example:
        >>> from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
        >>> agent = GRPOAgent("llm_gym/TicTacToeText-v0", "tiny",
        ...                   GRPOConfig(group_size=2, prompts_per_batch=1),
        ...                   env_kwargs={"constrained": True, "max_length": 512})
        >>> league = SelfPlayLeague({"snapshot_every": 1, "pool_size": 2}).attach(agent)
        >>> league.snapshot_ids()
        [0]
        >>> _ = agent.learn(1)  # one update: the league snapshots it, then draws an opponent
        >>> league.snapshot_ids(), league.weights().tolist()
        ([0, 1], [0.5, 0.5])
    """

    def __init__(self, config: SelfPlayConfig | dict[str, Any] | str | None = None) -> None:
        if config is None:
            config = SelfPlayConfig()
        elif not isinstance(config, SelfPlayConfig):
            config = SelfPlayConfig.from_json(config)
        self.config = config
        self.seed = 0 if config.seed is None else config.seed
        self.snapshots: list[tuple[int, dict[str, torch.Tensor]]] = []  # (update, weights)
        self.current: int | None = None  # update id of the snapshot playing now
        self.drawn_at = 0  # the update after which it was drawn (seeds its sampling)
        self._learner: torch.nn.Module | None = None
        self.player: SnapshotPlayer | None = None

    # ------------------------------------------------------------------------- attach
    def attach(self, trainer: Any) -> SelfPlayLeague:
        """Put the league in every opponent seat of ``trainer``'s batch; add it as its hook.

        Raises:
            ValueError: the trainer is not an LLM trainer on a game view, or the env was
                given a fixed ``opponent``.
        """
        seats = _game_seats(trainer)
        self._learner = trainer.language_model()
        if self.config.seed is None:
            self.seed = int(trainer.seed)
        frozen = copy.deepcopy(self._learner).eval()
        for param in frozen.parameters():
            param.requires_grad_(False)
        first = seats[0]
        self.player = SnapshotPlayer(frozen, first.tokenizer, int(first.action_space.n),
                                     self.config.temperature)
        # The opponent sees its seat as the learner's env shows it (same budgets and masks).
        policy = AgentPolicy(self.player, first.tokenizer, constrained=first.constrains_vocabulary,
                             deterministic=False, max_length=first.max_length,
                             max_new_tokens=first.max_new_tokens)
        for seat in seats:
            seat.game.opponent = policy
        trainer.add_hook(HOOK_NAME, self)  # restores a checkpointed league, if any
        if not self.snapshots:
            self._add_snapshot(trainer.num_updates)
            self._draw(trainer.num_updates)
        return self

    # ------------------------------------------------------------------------- the hook
    def on_update(self, trainer: Any) -> dict[str, float]:
        """Snapshot every ``snapshot_every`` updates, then draw the next batch's opponent."""
        update = int(trainer.num_updates)
        if update % self.config.snapshot_every == 0:
            self._add_snapshot(update)
        self._draw(update)
        return {"selfplay/pool_size": float(len(self.snapshots)),
                "selfplay/opponent_update": float(self.current)}

    def state_dict(self) -> dict[str, Any]:
        """The pool (weights on their device), the draw and the settings."""
        return {"config": self.config.to_dict(), "seed": self.seed,
                "snapshots": [(u, dict(w)) for u, w in self.snapshots],
                "current": self.current, "drawn_at": self.drawn_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the drawn snapshot plays again, seeded as before."""
        if state["config"] != self.config.to_dict():
            raise ValueError(f"the checkpoint's self-play settings {state['config']} differ "
                             f"from the league's {self.config.to_dict()}; resume with the same "
                             "settings")
        device = _device(self.player.model) if self.player is not None else "cpu"
        self.seed = int(state["seed"])
        self.snapshots = [(int(u), {k: v.to(device) for k, v in w.items()})
                          for u, w in state["snapshots"]]
        self.current, self.drawn_at = state["current"], int(state["drawn_at"])
        self._activate()

    # ------------------------------------------------------------------------- pool
    def snapshot_ids(self) -> list[int]:
        """The update after which each snapshot in the pool was taken, oldest first."""
        return [update for update, _ in self.snapshots]

    def weights(self) -> np.ndarray:
        """The probability of drawing each snapshot (same order as :meth:`snapshot_ids`)."""
        n = len(self.snapshots)
        if n == 0:
            raise ValueError("the league has no snapshot yet; attach() it to a trainer first")
        probs = np.full(n, (1.0 - self.config.latest_prob) / n)
        probs[-1] += self.config.latest_prob
        return probs

    def draw(self, update: int) -> int:
        """The update id of the snapshot drawn after ``update`` (seeded by ``(seed, update)``)."""
        rng = np.random.default_rng([self.seed, int(update)])
        return self.snapshot_ids()[int(rng.choice(len(self.snapshots), p=self.weights()))]

    def _add_snapshot(self, update: int) -> None:
        if self._learner is None:
            raise ValueError("attach() the league to a trainer before snapshotting")
        self.snapshots.append((update, _trainable_weights(self._learner)))
        del self.snapshots[: -self.config.pool_size]  # the oldest leave first
        logger.info("self-play snapshot after update %d; pool %s", update, self.snapshot_ids())

    def _draw(self, update: int) -> None:
        self.current, self.drawn_at = self.draw(update), int(update)
        self._activate()

    def _activate(self) -> None:
        """Load the drawn snapshot into the frozen player and seed its sampling."""
        if self.player is None or self.current is None:
            return
        weights = dict(self.snapshots)[self.current]
        _load_weights(self.player.model, weights)
        self.player.generator.manual_seed(
            int(np.random.default_rng([self.seed, self.drawn_at, 1]).integers(2**62)))


# ============================================================================== helpers
def _game_seats(trainer: Any) -> list[Any]:
    """The single-agent game views of every row of ``trainer``'s batch, checked."""
    from llm_gym.agents.trainer import LLMTrainer
    from llm_gym.envs.multiagent.single_agent import GameSeatTextEnv

    if not isinstance(trainer, LLMTrainer) or getattr(trainer, "tokenizer", None) is None:
        raise ValueError(f"self-play trains a language model: attach the league to a grpo, "
                         f"rloo, reinforce-pp or ppo agent on a token game view, not "
                         f"{type(trainer).__name__} on {getattr(trainer, 'env_id', None)}")
    rows = [env.unwrapped for env in getattr(trainer.envs.unwrapped, "envs", [])]
    if not rows or not all(isinstance(env, GameSeatTextEnv) for env in rows):
        raise ValueError(f"self-play needs a game view such as llm_gym/TicTacToeText-v0 or "
                         f"llm_gym/ConnectFourText-v0, not {trainer.env_id}")
    if "opponent" in trainer.env_kwargs or any(
            env.game.opponent is not random_policy for env in rows):
        raise ValueError("self-play fills the opponent seat with the league; drop 'opponent' "
                         "from the env kwargs")
    return rows


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _trainable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights the trainer changes, on their device (LoRA: only the adapter)."""
    if hasattr(model, "peft_config"):
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model)
    else:
        state = model.state_dict()
    return {k: v.detach().clone() for k, v in state.items()}


def _load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, weights)
    else:
        model.load_state_dict(weights)
