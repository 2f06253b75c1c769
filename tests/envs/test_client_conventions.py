"""Every registered id through TorchRL's ``GymEnv(id, num_envs=2)`` (issue 21).

TorchRL builds an info spec from ``reset`` and a random step, then reads the same keys from
every step and the ``final_info`` of every finished episode: infos must keep their keys and
number types, and hold no ``None`` (TorchRL cannot type one). ``GymEnv`` runs the copies in
``AsyncVectorEnv`` processes; :class:`SyncGymEnv` swaps in ``SyncVectorEnv`` (same arguments,
same wrapper code) so the whole registry runs in seconds.

Known: Code-v0 and CodeTool-v0 (``per_test`` lists, see ``PER_TEST_LISTS``). Known and
TorchRL's own: an env whose observation space is ``Discrete`` fails TorchRL's spec
check (it makes a one-hot spec but passes the integer on), FrozenLake-v1 as much as
``llm_gym/LeftRight-v0``; :func:`test_discrete_observations_fail_as_frozenlake_does` pins it.
"""

from __future__ import annotations

import gymnasium as gym
import pytest

from llm_gym.registration import TOKEN_ENVS, TOOL_ENVS

torchrl_envs = pytest.importorskip("torchrl.envs")

pytestmark = pytest.mark.filterwarnings("ignore")  # TorchRL's own deprecation chatter


class SyncGymEnv(torchrl_envs.GymEnv):
    """TorchRL's ``GymEnv`` with its ``num_envs`` copies in one process."""

    def _async_env(self, *args, **kwargs):
        return gym.vector.SyncVectorEnv(*args, **kwargs)


def _kwargs(env_id: str, env_kwargs) -> dict:
    kwargs = dict(env_kwargs(env_id))
    if env_id.split("/", 1)[1] in TOKEN_ENVS or env_id.split("/", 1)[1] in TOOL_ENVS:
        kwargs["max_new_tokens"] = 3  # episodes end inside the rollout: final infos are read
    return kwargs


def _discrete_observations(env_id: str, env_kwargs) -> bool:
    env = gym.make(env_id, **env_kwargs(env_id))
    try:
        return isinstance(env.observation_space, gym.spaces.Discrete)
    finally:
        env.close()


# Code-v0 and CodeTool-v0 report ``per_test``, one bool per hidden test of the item: a list
# whose length differs between items (and is empty for a reply cut at the budget), which
# TorchRL cannot stack across the copies ("Node arity mismatch") once two episodes end with
# different lengths. Fixing it changes envs/code.py's info (not this change's to make).
PER_TEST_LISTS = {"llm_gym/Code-v0", "llm_gym/CodeTool-v0"}


def test_every_id_rolls_out_in_torchrl_gymenv(registered_env_id, env_kwargs, request):
    if _discrete_observations(registered_env_id, env_kwargs):
        pytest.skip("Discrete observations: TorchRL's own failure, see the test below")
    if registered_env_id in PER_TEST_LISTS:
        request.applymarker(pytest.mark.xfail(reason="per_test lists of varying length",
                                              raises=ValueError, strict=False))
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)  # TorchRL's random actions
    env = SyncGymEnv(registered_env_id, num_envs=2, **_kwargs(registered_env_id, env_kwargs))
    try:
        rollout = env.rollout(12, break_when_any_done=False)
        assert rollout.batch_size == (2, 12)
        if registered_env_id.split("/", 1)[1] in TOKEN_ENVS:
            assert bool(rollout["next", "done"].any())  # the final-info path was taken
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "llm_gym/LeftRight-v0"])
def test_discrete_observations_fail_as_frozenlake_does(env_id):
    # If TorchRL fixes Discrete observations, this fails: drop the README's caveat.
    with pytest.raises(AssertionError, match="spec check failed"):
        SyncGymEnv(env_id, num_envs=2).rollout(4, break_when_any_done=False)


def test_math_infos_hold_no_none_and_the_same_keys_from_reset_to_the_end(env_kwargs):
    env = gym.make("llm_gym/GSM8K-v0", max_new_tokens=2, **env_kwargs("llm_gym/GSM8K-v0"))
    _, reset_info = env.reset(seed=0)
    done, info = False, {}
    while not done:
        _, _, terminated, truncated, info = env.step(65)
        done = terminated or truncated
    assert set(reset_info) <= set(info)
    assert None not in info.values() and info["extracted"] == ""


@pytest.mark.parametrize("env_id", ["llm_gym/TicTacToe-v0", "llm_gym/ConnectFour-v0"])
def test_classic_game_infos_have_the_same_keys_and_types_at_reset_and_step(env_id):
    env = gym.make(env_id)
    _, reset_info = env.reset(seed=0)
    _, _, _, _, info = env.step(int(env.unwrapped.action_masks().argmax()))
    assert {k: type(v) for k, v in reset_info.items()} == {
        k: type(v) for k, v in info.items() if k in reset_info}
    assert set(reset_info) == {"seat", "valid_move"} <= set(info)


@pytest.mark.xfail(raises=ValueError, strict=True,
                   reason="known: Code-v0's per_test lists differ in length between items")
def test_code_env_per_test_lists_break_torchrl_when_two_episodes_end_together(env_kwargs):
    # Row 0 ends its reply with the stop token (the code runs: one bool per test), row 1 at the
    # budget (no run: []), in the same step. If this passes, drop the xfail above.
    torch = pytest.importorskip("torch")
    env = SyncGymEnv("llm_gym/Code-v0", num_envs=2, max_new_tokens=3,
                     **env_kwargs("llm_gym/Code-v0"))
    stop = min(env._env.envs[0].unwrapped.tokenizer.stop_token_ids)
    tensordict = env.reset()
    for row0 in (65, 65, stop):
        tensordict["action"] = torch.nn.functional.one_hot(
            torch.tensor([row0, 65]), env.action_spec.shape[-1])
        tensordict = env.step(tensordict)["next"]
