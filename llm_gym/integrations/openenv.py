"""OpenEnv both ways: llm_gym envs as OpenEnv env servers, OpenEnv servers as llm_gym envs.

* :func:`create_app` / :func:`serve` (``llm-gym serve ID``): any llm_gym id through OpenEnv's own
  server, one env per WebSocket session (:mod:`llm_gym.integrations.openenv_server`).
* :func:`make` (``llm_gym/OpenEnv-v0``): an OpenEnv server played as an llm_gym token env
  (:mod:`llm_gym.integrations.openenv_client`).

Needs the ``openenv`` extra (``openenv-core``). Importing this module registers
``llm_gym/OpenEnv-v0``.

Example:
    >>> with ServerThread(create_app("llm_gym/Arithmetic-v0", max_sessions=2)) as server:
    ...     env = make(server.url)
    ...     obs, info = env.reset(seed=0, options={"index": 0})
    ...     tok = env.unwrapped.tokenizer
    ...     for t in tok.encode("12") + [tok.eos_token_id]:
    ...         obs, reward, terminated, truncated, info = env.step(t)
    ...     env.close()
    >>> env.unwrapped.task.messages[-1]["content"]
    'What is 8 + 4? Answer with a single integer.'
    >>> reward, terminated, info["correct"]
    (1.0, True, True)
"""

from __future__ import annotations

from llm_gym.integrations.openenv_client import OpenEnvTokenEnv, make, make_vec
from llm_gym.integrations.openenv_server import (
    LlmGymAction,
    LlmGymEnvironment,
    LlmGymObservation,
    ServerThread,
    create_app,
    serve,
)

__all__ = ["LlmGymAction", "LlmGymEnvironment", "LlmGymObservation", "OpenEnvTokenEnv",
           "ServerThread", "create_app", "make", "make_vec", "serve"]
