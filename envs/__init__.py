"""Task environments of llm_gym (installed as ``llm_gym.envs``).

Importing this package has no side effects: registration lives in ``llm_gym.registration``.
"""
