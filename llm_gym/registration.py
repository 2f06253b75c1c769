"""Every ``gym.register`` of llm_gym, with string entry points (no heavy imports here).

Gymnasium 1.x no longer loads plugins from entry points, so ``import llm_gym`` calls
:func:`register_envs`; ``gym.make("llm_gym:llm_gym/LeftRight-v0")`` imports llm_gym first.
Token envs also register a ``vector_entry_point`` for the batched
:class:`~llm_gym.vector.TokenVectorEnv`.
"""

from __future__ import annotations

import gymnasium as gym

NAMESPACE = "llm_gym"

# (name, entry point module:class, extra register kwargs). Token envs get a vector entry point
# ``module:make_vec`` automatically.
CLASSIC_ENVS = {
    # LeftRight counts its own 20-step limit (see its docstring), so no TimeLimit here.
    "LeftRight-v0": ("llm_gym.envs.left_right:LeftRightEnv", {}),
    # Single-agent views of PettingZoo games (issue 9). An illegal move changes nothing, so
    # an unmasked agent could retry forever: the time limit ends such games.
    "TicTacToe-v0": ("llm_gym.envs.multiagent.tictactoe_text_v0:TicTacToeSoloEnv",
                     {"max_episode_steps": 50}),
    "ConnectFour-v0": ("llm_gym.envs.multiagent.connect_four_text_v0:ConnectFourSoloEnv",
                       {"max_episode_steps": 200}),
    "RockPaperScissors-v0": ("llm_gym.envs.multiagent.rps_text_v0:RockPaperScissorsSoloEnv",
                             {"max_episode_steps": 100}),
    "PrisonersDilemma-v0": (
        "llm_gym.envs.multiagent.prisoners_dilemma_text_v0:PrisonersDilemmaSoloEnv",
        {"max_episode_steps": 50}),
    # Bandit ends itself after its horizon of pulls (a true end, see its docstring).
    "Bandit-v0": ("llm_gym.envs.bandit:BanditEnv", {}),
}
TOKEN_ENVS = {
    "LeftRightText-v0": "llm_gym.envs.left_right_text:LeftRightTextEnv",
    "FrozenLakeText-v0": "llm_gym.envs.frozen_lake_text:FrozenLakeTextEnv",
    "BanditText-v0": "llm_gym.envs.bandit_text:BanditTextEnv",
    "Arithmetic-v0": "llm_gym.envs.arithmetic:ArithmeticEnv",
    "GSM8K-v0": "llm_gym.envs.gsm8k:GSM8KEnv",
    "Math-v0": "llm_gym.envs.math:MathEnv",
    "Code-v0": "llm_gym.envs.code:CodeEnv",
    "TicTacToeText-v0": "llm_gym.envs.multiagent.tictactoe_text_v0:TicTacToeSoloTextEnv",
    "ConnectFourText-v0": "llm_gym.envs.multiagent.connect_four_text_v0:ConnectFourSoloTextEnv",
    "RockPaperScissorsText-v0": "llm_gym.envs.multiagent.rps_text_v0:RockPaperScissorsSoloTextEnv",
    "PrisonersDilemmaText-v0":
        "llm_gym.envs.multiagent.prisoners_dilemma_text_v0:PrisonersDilemmaSoloTextEnv",
}
# Token envs whose agent may call tools (issue 22): the generic ToolEnv behind with_tools, and
# registered tool tasks (module:class, default kwargs).
TOOL_ENVS = {
    "Tools-v0": ("llm_gym.tools.env:ToolEnv", {}),
    # 5-digit sums and products: too large to do in the head of a small model.
    "ArithmeticTool-v0": ("llm_gym.tools.env:ToolEnv", {
        "env": "llm_gym/Arithmetic-v0", "tools": ("calculator",),
        "env_kwargs": {"digits": 5, "operations": "+*"},
        "value_chars": "0123456789+-*/() "}),  # with constrained=True: expression characters
    # GSM8K with a sandboxed python tool; code tasks with run_tests on the visible test, graded
    # on the hidden ones. Their one make_vec picks the class from "env", so it stays given here.
    "GSM8KTool-v0": ("llm_gym.envs.tool_tasks:GSM8KToolEnv", {"env": "llm_gym/GSM8K-v0"}),
    "CodeTool-v0": ("llm_gym.envs.tool_tasks:CodeToolEnv", {"env": "llm_gym/Code-v0"}),
}
# Ids that need a dataset (hub download or data_files=) to build; every other id builds offline
# with no arguments.
DATASET_ENVS = frozenset({"GSM8K-v0", "Math-v0", "Code-v0", "GSM8KTool-v0", "CodeTool-v0"})


# Ids that play a running server (``base_url=``): registered with the others, but left out of
# :func:`env_ids`, the ids that build from no arguments or a dataset (registry-wide checks,
# cards). ``llm_gym/OpenEnv-v0``: an OpenEnv env server as a token env (issue 21).
_OPENENV_CLIENT = "llm_gym.integrations.openenv_client"
SERVER_ENVS = {"OpenEnv-v0": f"{_OPENENV_CLIENT}:OpenEnvTokenEnv"}


def env_ids() -> list[str]:
    """Every id llm_gym registers that builds offline, e.g. ``llm_gym/LeftRight-v0``.

    The server-backed ids (:func:`server_env_ids`) are registered too, but need a server.
    """
    return [f"{NAMESPACE}/{name}" for name in [*CLASSIC_ENVS, *TOKEN_ENVS, *TOOL_ENVS]]


def server_env_ids() -> list[str]:
    """The registered ids that play a running server (``base_url=``), e.g. OpenEnv's."""
    return [f"{NAMESPACE}/{name}" for name in SERVER_ENVS]


def register_envs() -> None:
    """Register every llm_gym id with Gymnasium (idempotent)."""
    for name, (entry_point, kwargs) in CLASSIC_ENVS.items():
        _register(name, entry_point, **kwargs)
    for name, entry_point in TOKEN_ENVS.items():
        module = entry_point.split(":")[0]
        # No passive env checker: Gymnasium's marks its first reset as checked before calling
        # the env, so a rejected first reset (a bad options["index"]) leaves it unable to step
        # (TypeError on None). The test suite runs the full check_env on every id instead.
        _register(name, entry_point, vector_entry_point=f"{module}:make_vec",
                  disable_env_checker=True)
    for name, (entry_point, kwargs) in TOOL_ENVS.items():
        module = entry_point.split(":")[0]
        _register(name, entry_point, kwargs=kwargs, vector_entry_point=f"{module}:make_vec",
                  disable_env_checker=True)
    register_openenv()


def register_openenv() -> None:
    """Register ``llm_gym/OpenEnv-v0``, an OpenEnv server as a token env (idempotent)."""
    _register("OpenEnv-v0", SERVER_ENVS["OpenEnv-v0"],
              vector_entry_point=f"{_OPENENV_CLIENT}:make_vec", disable_env_checker=True)


def _register(name: str, entry_point: str, **kwargs: object) -> None:
    env_id = f"{NAMESPACE}/{name}"
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, **kwargs)
