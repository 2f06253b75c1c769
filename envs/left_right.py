"""The left/right walk: a five-cell corridor where the greedy move is the wrong one."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from llm_gym.token_env import warn_unrenderable

LEFT, STAY, RIGHT = 0, 1, 2
MIN_POSITION, MAX_POSITION, GOAL, TRAP = -2, 2, 2, 1


class LeftRightEnv(gym.Env[int, int]):
    """A walk on positions -2..2 whose optimal return needs a look past the next reward.

    ## Description
    The agent starts at 0. Reaching 2 pays +10 and ends the episode; landing on 1 costs -5;
    every other step costs -1. The optimal return is +5 (right, right). An agent that only
    looks at the immediate reward prefers -1 to -5 and never crosses the trap cell.

    ## Action Space
    `Discrete(3)`: 0 left, 1 stay, 2 right. Moves past either end leave the agent in place.

    ## Observation Space
    `Discrete(5)`: the position plus 2 (so 0..4; the start is 2).

    ## Rewards
    +10 on reaching 2, -5 on landing on 1, -1 otherwise.

    ## Episode End
    Terminated on reaching 2. Truncated after `max_steps` (20) steps. The env counts
    the steps itself rather than relying on a `TimeLimit` wrapper, so that a step after a
    truncation raises like a step after termination (RELIABILITY.md, Environment API). As with
    `TimeLimit`, reaching the goal on the last step is both terminated and truncated.

    ## Arguments
    `max_steps`: the step limit (default 20).
    `render_mode`: `None` or `"ansi"`; other modes (SB3 passes `"rgb_array"`) are accepted
    and render nothing, with a warning, as in Gymnasium's own envs.

    ## Version History
    * v0: initial version.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/LeftRight-v0")
        >>> obs, info = env.reset(seed=0)
        >>> env.step(2)[1], env.step(2)[1]
        (-5.0, 10.0)
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}
    action_names = ("left", "stay", "right")

    def __init__(self, max_steps: int = 20, render_mode: str | None = None) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(MAX_POSITION - MIN_POSITION + 1)
        self.action_space = spaces.Discrete(3)
        self.max_steps = int(max_steps)
        self.position = 0
        self.elapsed_steps = 0
        self._needs_reset = True  # stepping before reset or after the episode ended is an error

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        self.position = 0
        self.elapsed_steps = 0
        self._needs_reset = False
        return self._obs(), {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        # Discrete.contains accepts True as 1; a bool is never a valid move.
        if isinstance(action, (bool, np.bool_)) or not self.action_space.contains(action):
            raise ValueError(f"action must be 0 (left), 1 (stay) or 2 (right), got {action!r}")
        if self._needs_reset:
            raise RuntimeError("step() called before reset() or after the episode ended; "
                               "call reset()")
        move = int(action) - 1
        self.position = min(MAX_POSITION, max(MIN_POSITION, self.position + move))
        self.elapsed_steps += 1
        terminated = self.position == GOAL
        truncated = self.elapsed_steps >= self.max_steps
        self._needs_reset = terminated or truncated
        if terminated:
            return self._obs(), 10.0, True, truncated, {}
        reward = -5.0 if self.position == TRAP else -1.0
        return self._obs(), reward, False, truncated, {}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            warn_unrenderable(self)
            return None
        cells = ["A" if p == self.position else ("G" if p == GOAL else ".")
                 for p in range(MIN_POSITION, MAX_POSITION + 1)]
        return "".join(cells)

    def _obs(self) -> int:
        return self.position - MIN_POSITION
