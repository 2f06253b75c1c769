"""Single-agent views of the games: Gymnasium checks, batching, opponents, trainers on them."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import llm_gym  # noqa: F401 - registers the ids
from llm_gym.envs.multiagent.games import TICTACTOE
from llm_gym.envs.multiagent.policies import Forfeit, MinimaxPolicy, make_policy, random_policy
from llm_gym.envs.multiagent.single_agent import SeatPlay

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _play_word(env, word: str):
    tok = env.unwrapped.tokenizer
    for token in tok.encode(word) + [tok.eos_token_id]:
        out = env.step(token)
    return out


@pytest.mark.parametrize("opponent", ["random", "minimax"])
def test_token_view_passes_check_env_against_each_opponent(opponent):
    env = gym.make("llm_gym/TicTacToeText-v0", opponent=opponent, constrained=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*is different from the unwrapped version.*")
        check_env(env)


def test_a_game_against_minimax_never_wins_and_ends_with_an_outcome():
    env = gym.make("llm_gym/TicTacToeText-v0", opponent="minimax", constrained=True)
    rng = np.random.default_rng(0)
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        terminated = False
        while not terminated:
            legal = env.unwrapped.game.legal
            _, reward, terminated, truncated, info = _play_word(
                env, str(int(rng.choice(np.flatnonzero(legal))) + 1))
            assert not truncated
        assert info["outcome"] in ("draw", "loss") and reward <= 0


def test_an_illegal_reply_costs_the_penalty_and_changes_nothing():
    env = gym.make("llm_gym/TicTacToeText-v0", seat=0)
    env.reset(seed=0)
    _play_word(env, "5")
    board = env.unwrapped.game.env.observe("player_1")["observation"].copy()
    _, reward, terminated, _, info = _play_word(env, "5")
    assert (reward, terminated, info["valid_move"]) == (pytest.approx(-0.1), False, False)
    np.testing.assert_array_equal(env.unwrapped.game.env.observe("player_1")["observation"],
                                  board)


def test_pinned_index_replays_the_same_game_for_a_grpo_group():
    env = gym.make("llm_gym/TicTacToeText-v0")
    first, _ = env.reset(options={"index": 3})
    second, _ = env.reset(options={"index": 3})
    np.testing.assert_array_equal(first["input_ids"], second["input_ids"])


def test_vector_env_steps_the_views_as_a_batch():
    envs = gym.make_vec("llm_gym/TicTacToeText-v0", 3, vectorization_mode="vector_entry_point",
                        constrained=True)
    obs, _ = envs.reset(seed=0)
    assert obs["action_mask"].shape == (3, 260)
    tok = envs.unwrapped.tokenizer
    for _ in range(2):  # one move per row: its first allowed token, then end of turn
        obs, rewards, terminated, truncated, _ = envs.step(obs["action_mask"].argmax(axis=1))
    assert (obs["action_mask"][:, tok.eos_token_id] == 0).all()  # a new turn has begun
    assert not truncated.any()


def test_classic_view_masks_and_the_same_rules():
    env = gym.make("llm_gym/TicTacToe-v0", opponent="minimax", seat=1)
    obs, info = env.reset(seed=0)
    assert info["seat"] == 1 and obs.shape == (18,) and obs.sum() == 1  # X moved
    masks = env.unwrapped.action_masks()
    assert masks.sum() == 8
    taken = int(np.flatnonzero(~masks)[0])
    _, reward, terminated, _, info = env.step(taken)
    assert (reward, terminated, info) == (pytest.approx(-0.1), False,
                                          {"seat": 1, "valid_move": False})
    with pytest.raises(ValueError, match="move number"):
        env.step(9)


def test_opponent_specs_and_forfeits():
    assert make_policy("random") is random_policy
    with pytest.raises(ValueError, match="unknown opponent"):
        make_policy("alphazero")
    with pytest.raises(TypeError, match="opponent"):
        make_policy(3)
    with pytest.raises(ValueError, match="seat"):
        SeatPlay(TICTACTOE, seat=2)
    with pytest.raises(ValueError, match="connect_four"):
        from llm_gym.envs.multiagent.games import RPS

        play = SeatPlay(RPS, opponent=MinimaxPolicy(), seat=1)
        play.reset(np.random.default_rng(0))

    def quitter(turn):
        raise Forfeit("gives up")

    play = SeatPlay(TICTACTOE, opponent=quitter, seat=0)
    play.reset(np.random.default_rng(0))
    assert play.play(4) == 1.0 and play.over and play.outcome() == "win"


def test_grpo_trains_on_the_tictactoe_view_against_random_with_a_shaping_wrapper():
    from llm_gym.agents.factory import make_agent

    agent = make_agent("grpo", "llm_gym/TicTacToeText-v0", model="tiny",
                       env_kwargs={"constrained": True, "max_length": 512},
                       config={"group_size": 2, "prompts_per_batch": 2},
                       wrappers=[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}])
    agent.learn(total_timesteps=40)
    assert agent.episode_log, "no finished game was recorded"
    assert all(r.success is not None for r in agent.episode_log)
    # game rewards are -1/0/+1; every token costs 0.01 (constrained: no invalid penalty)
    for record in agent.episode_log:
        game_return = record.episode_return + 0.01 * record.length
        assert min(abs(game_return - g) for g in (-1, 0, 1)) < 1e-6


def test_maskable_ppo_and_an_sb3_opponent_on_the_classic_view():
    from llm_gym.agents.factory import make_agent

    model = make_agent("sb3-maskable-ppo", "llm_gym/TicTacToe-v0",
                       config={"n_steps": 64, "batch_size": 32}).learn(64)
    env = gym.make("llm_gym/TicTacToe-v0", opponent=model)
    env.reset(seed=0)
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step(int(np.flatnonzero(env.unwrapped.action_masks())[0]))
    assert info["outcome"] in ("win", "draw", "loss")
