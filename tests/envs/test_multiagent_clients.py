"""The token games with PettingZoo's own tests and PettingZoo's clients (issue 21).

PettingZoo's ``render_test`` (``"human"`` prints, ``"ansi"`` returns text) and
``max_cycles_test`` (``max_cycles`` counts each agent's steps); Tianshou's ``PettingZooEnv``
reads a constrained game's ``observation["observation"]`` and ``observation["action_mask"]``,
the layout of PettingZoo's classic games, which AgileRL's masking reads too.
"""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import max_cycles_test, render_test

from llm_gym.envs.multiagent import (
    connect_four_text_v0,
    prisoners_dilemma_text_v0,
    rps_text_v0,
    tictactoe_text_v0,
)

GAMES = [tictactoe_text_v0, connect_four_text_v0, rps_text_v0, prisoners_dilemma_text_v0]


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("module", GAMES)
def test_pettingzoo_render_test_and_human_mode_prints(module, constrained, capsys):
    render_test(lambda render_mode=None: module.env(constrained=constrained,
                                                    render_mode=render_mode))
    printed = capsys.readouterr().out
    assert "You are" in printed or "We play" in printed  # the conversation, printed
    game = module.env(constrained=constrained, render_mode="human")
    game.reset(seed=0)
    assert game.render() is None
    assert capsys.readouterr().out.strip()
    with pytest.raises(ValueError, match="render_mode"):
        module.env(render_mode="rgb_array")


@pytest.mark.parametrize("module", [rps_text_v0, prisoners_dilemma_text_v0])
def test_pettingzoo_max_cycles_test(module):
    max_cycles_test(module)


def test_max_cycles_counts_token_steps_and_num_rounds_the_match():
    game = rps_text_v0.parallel_env(max_cycles=3, num_rounds=15)
    game.reset(seed=0)
    for step in range(3):
        _, _, terms, truncs, _ = game.step({a: 0 for a in game.agents})
        assert all(truncs.values()) == (step == 2) and not any(terms.values())
    assert game.agents == []
    assert "Round 1 of 15" in game.seats["player_0"].text()  # the match is still 15 rounds
    with pytest.raises(ValueError, match="max_cycles"):
        rps_text_v0.parallel_env(max_cycles=0)


@pytest.mark.parametrize("module", GAMES)
def test_a_constrained_observation_has_pettingzoo_classic_layout(module):
    game = module.env(constrained=True)
    game.reset(seed=0)
    agent = game.agent_selection
    obs = game.observe(agent)
    space = game.observation_space(agent)
    assert sorted(obs) == ["action_mask", "observation"]
    assert sorted(obs["observation"]) == ["agent_mask", "attention_mask", "input_ids"]
    assert space.contains(obs)
    assert obs["action_mask"].shape == (game.unwrapped.tokenizer.vocab_size,)
    plain = module.env(constrained=False)
    plain.reset(seed=0)
    assert sorted(plain.observe(plain.agent_selection)) == sorted(obs["observation"])


def test_parallel_constrained_observations_have_the_classic_layout_at_every_step():
    game = prisoners_dilemma_text_v0.parallel_env(constrained=True, num_rounds=1)
    observations, _ = game.reset(seed=0)
    rng = np.random.default_rng(0)
    while game.agents:
        for agent, obs in observations.items():
            assert game.observation_space(agent).contains(obs)
        actions = {a: int(rng.choice(np.flatnonzero(observations[a]["action_mask"])))
                   for a in game.agents}
        observations, *_ = game.step(actions)


@pytest.mark.parametrize("module", [tictactoe_text_v0, connect_four_text_v0])
def test_tianshou_pettingzoo_env_plays_a_whole_game_inside_the_mask(module):
    tianshou_env = pytest.importorskip("tianshou.env")
    env = tianshou_env.PettingZooEnv(module.env(constrained=True))
    obs, _ = env.reset(seed=0)
    rng, steps, term, trunc = np.random.default_rng(0), 0, False, False
    while not (term or trunc):
        assert obs["agent_id"] in env.agents
        assert sorted(obs["obs"]) == ["agent_mask", "attention_mask", "input_ids"]
        legal = np.flatnonzero(obs["mask"])
        assert 0 < len(legal) < env.action_space.n  # the game's mask, not Tianshou's all-True
        obs, rewards, term, trunc, _ = env.step(int(rng.choice(legal)))
        steps += 1
    assert term and sorted(rewards) in ([-1, 1], [0, 0])  # a masked game ends on the board
    assert steps < 200


# AgileRL (agilerl 2.58 pins pettingzoo<1.27, so it is not installed here): a reproduction of
# where it reads masks. Its multi-agent algorithms take a Parallel env's masks from
# ``infos[agent]["action_mask"]`` (``MultiAgentRLAlgorithm.extract_action_masks``); its AEC
# self-play tutorials (Connect Four) read ``observation["observation"]`` and
# ``observation["action_mask"]`` after ``env.last()``.
def _agilerl_extract_action_masks(infos, agent_ids):
    return {agent: info.get("action_mask", None) if isinstance(info, dict) else None
            for agent, info in infos.items() if agent in agent_ids}


@pytest.mark.parametrize("module", [rps_text_v0, prisoners_dilemma_text_v0])
def test_agilerl_reads_parallel_masks_from_infos(module):
    game = module.parallel_env(constrained=True)
    observations, infos = game.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        masks = _agilerl_extract_action_masks(infos, game.possible_agents)
        assert set(masks) == set(game.agents)
        for agent, mask in masks.items():
            np.testing.assert_array_equal(mask, observations[agent]["action_mask"])
        actions = {a: int(rng.choice(np.flatnonzero(masks[a]))) for a in game.agents}
        observations, _, _, _, infos = game.step(actions)
        if not game.agents:
            break
    plain = module.parallel_env(constrained=False)
    _, infos = plain.reset(seed=0)
    assert set(_agilerl_extract_action_masks(infos, plain.possible_agents).values()) == {None}


def test_agilerl_aec_tutorial_reading_of_a_turn_game():
    game = connect_four_text_v0.env(constrained=True)
    game.reset(seed=0)
    rng = np.random.default_rng(0)
    for agent in game.agent_iter(400):
        observation, _, termination, truncation, _ = game.last()
        if termination or truncation:
            game.step(None)
            continue
        state, action_mask = observation["observation"], observation["action_mask"]
        assert state["input_ids"].shape == game.observation_space(agent)["observation"][
            "input_ids"].shape
        game.step(int(rng.choice(np.flatnonzero(action_mask))))
    assert not game.agents  # a masked game ends on the board, well inside 400 steps


@pytest.mark.parametrize("constrained", [False, True])
def test_supersuit_vectorizes_a_parallel_game(constrained):
    ss = pytest.importorskip("supersuit")
    venv = ss.pettingzoo_env_to_vec_env_v1(rps_text_v0.parallel_env(constrained=constrained,
                                                                     num_rounds=1))
    obs, _ = venv.reset(seed=0)
    tokens = obs["observation"] if constrained else obs
    assert tokens["input_ids"].shape[0] == venv.num_envs == 2
    if constrained:
        assert obs["action_mask"].shape == (2, venv.action_space.n)
    rewards, ended = np.zeros(2), False
    for _ in range(40):
        if constrained:  # the first allowed token: both spell "paper", a tie, and the match ends
            actions = np.array([int(np.flatnonzero(m)[0]) for m in obs["action_mask"]])
        else:  # random tokens name no move: penalties
            actions = np.array([venv.action_space.sample() for _ in range(venv.num_envs)])
        obs, step_rewards, terminated, truncated, _ = venv.step(actions)
        rewards += step_rewards
        ended |= bool((terminated | truncated).all())
    assert ended if constrained else (rewards < 0).all()


def test_supersuit_reward_wrapper_on_a_turn_game():
    ss = pytest.importorskip("supersuit")
    game = ss.clip_reward_v0(tictactoe_text_v0.env(), lower_bound=-0.05, upper_bound=1)
    game.reset(seed=0)
    tok = game.unwrapped.tokenizer
    for token in tok.encode("no") + [tok.eos_token_id]:  # names no cell: the -0.1 penalty
        game.step(token)
    assert game.rewards["player_1"] == pytest.approx(-0.05)
