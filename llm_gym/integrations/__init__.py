"""llm_gym environments inside other libraries' training loops, and theirs inside llm_gym.

* :mod:`llm_gym.integrations.trl` — TRL's ``environment_factory``, reward functions and
  prompt datasets from any llm_gym id (extra ``trl``).
* :mod:`llm_gym.integrations.openenv` — llm_gym envs served through OpenEnv's own server, and
  an OpenEnv server played as an llm_gym token env (extra ``openenv``).

Submodules import their library lazily, so ``import llm_gym.integrations`` needs neither.
"""
