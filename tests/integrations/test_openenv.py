"""llm_gym envs through OpenEnv's own server and client, and OpenEnv servers as llm_gym envs.

Every server runs in-process on loopback (uvicorn in a thread, a free port); every client is
OpenEnv's own (``GenericEnvClient``) or llm_gym's ``make``, which drives it.
"""

from __future__ import annotations

import json
import re
import time

import gymnasium as gym
import numpy as np
import pytest

import llm_gym  # noqa: F401  (registers the ids)

pytest.importorskip("openenv")

from openenv.core import GenericEnvClient  # noqa: E402

from llm_gym.integrations.openenv_server import ServerThread, create_app  # noqa: E402

# The client module registers llm_gym/OpenEnv-v0 when imported; it is imported inside the tests
# (not at collection), so the registry checks of tests/envs see only llm_gym's own ids.


def client_module():
    from llm_gym.integrations import openenv_client

    return openenv_client


@pytest.fixture(scope="module")
def arithmetic_url():
    with ServerThread(create_app("llm_gym/Arithmetic-v0", max_sessions=4)) as server:
        yield server.url


@pytest.fixture(scope="module")
def tictactoe_url():
    with ServerThread(create_app("llm_gym/TicTacToeText-v0", max_sessions=2)) as server:
        yield server.url


def arithmetic_answer(index: int) -> str:
    env = gym.make("llm_gym/Arithmetic-v0")
    env.reset(options={"index": index})
    return str(env.unwrapped.task.answer)


def first_free_cell(text: str) -> str:
    """The first free cell a tic-tac-toe board (or an invalid-move message) names."""
    return re.findall(r"[1-9]", text)[0]


# ---------------------------------------------------------------------------- server side
def test_openenv_client_plays_an_arithmetic_episode(arithmetic_url):
    with GenericEnvClient(base_url=arithmetic_url).sync() as client:
        first = client.reset(seed=0, index=2)
        question = first.observation["messages"][-1]["content"]
        assert not first.done and first.reward is None and "?" in question
        result = client.step({"message": arithmetic_answer(2)})
        assert (result.reward, result.done) == (1.0, True)
        assert result.observation["verifiable_reward"] == 1.0
        assert result.observation["info"]["correct"] is True
        client.reset(seed=0, index=2)
        wrong = client.step({"message": arithmetic_answer(2) + "1"})
        assert (wrong.reward, wrong.done, wrong.observation["info"]["correct"]) == (
            0.0, True, False)


def test_a_step_after_the_episode_ended_is_an_error_and_the_session_goes_on(arithmetic_url):
    with GenericEnvClient(base_url=arithmetic_url).sync() as client:
        client.reset(index=0)
        client.step({"message": "1"})
        with pytest.raises(RuntimeError, match="after the episode ended"):
            client.step({"message": "1"})
        with pytest.raises(RuntimeError, match="reset takes seed, episode_id and index"):
            client.reset(indx=0)
        assert client.reset(index=0).done is False


@pytest.mark.shared_data
def test_openenv_client_plays_a_gsm8k_episode(shared_data):
    data = {"data_files": str(shared_data / "gsm8k" / "train.jsonl")}
    direct = gym.make("llm_gym/GSM8K-v0", **data)
    direct.reset(options={"index": 7})
    gold = direct.unwrapped.task.answer
    with ServerThread(create_app("llm_gym/GSM8K-v0", data, max_sessions=1)) as server, \
            GenericEnvClient(base_url=server.url).sync() as client:
        first = client.reset(seed=3, index=7)
        assert direct.unwrapped.task.messages[-1]["content"] == first.observation["messages"][
            -1]["content"]
        result = client.step({"message": f"Working it out.\n#### {gold}"})
        assert (result.reward, result.done) == (1.0, True)
        assert result.observation["info"]["verdict"] == "correct"
        assert result.observation["verifiable_reward"] == 1.0


def test_openenv_client_plays_a_whole_tictactoe_game(tictactoe_url):
    with GenericEnvClient(base_url=tictactoe_url).sync() as client:
        result = client.reset(seed=5)
        assert result.observation["messages"][0]["role"] == "system"
        for _ in range(20):
            result = client.step({"message": first_free_cell(
                result.observation["messages"][-1]["content"])})
            if result.done:
                break
        assert result.done and not result.observation["truncated"]
        assert result.observation["info"]["outcome"] in {"win", "draw", "loss"}
        assert result.reward in (-1.0, 0.0, 1.0)


def test_classic_game_view_takes_action_names_and_shows_legal_actions():
    with ServerThread(create_app("llm_gym/TicTacToe-v0", max_sessions=1)) as server, \
            GenericEnvClient(base_url=server.url).sync() as client:
        result = client.reset(seed=1)
        obs = result.observation
        assert obs["action_names"] == [str(i) for i in range(1, 10)]
        assert len(obs["observation"]) == 18 and obs["text"].count("\n") == 2
        for _ in range(9):
            obs = result.observation
            result = client.step({"message": obs["action_names"][obs["legal_actions"][0]]})
            assert result.observation["info"]["valid_move"] is True
            if result.done:
                break
        assert result.done and result.observation["info"]["outcome"] in {"win", "draw", "loss"}
        with pytest.raises(RuntimeError, match="no action of llm_gym/TicTacToe-v0"):
            client.reset(seed=1)
            client.step({"message": "ten"})


def test_concurrent_sessions_are_isolated_and_capacity_is_enforced():
    from websockets.sync.client import connect

    with ServerThread(create_app("llm_gym/Arithmetic-v0", max_sessions=2)) as server:
        a = GenericEnvClient(base_url=server.url).sync().connect()
        b = GenericEnvClient(base_url=server.url).sync().connect()
        try:
            a.reset(index=0)
            b.reset(index=1)
            # Interleaved: each session scores against its own item.
            assert b.step({"message": arithmetic_answer(1)}).reward == 1.0
            assert a.step({"message": arithmetic_answer(0)}).reward == 1.0
            # A third session is refused: OpenEnv sends CAPACITY_REACHED, then closes.
            with connect(server.url.replace("http", "ws") + "/ws") as third:
                assert json.loads(third.recv(timeout=10))["data"]["code"] == "CAPACITY_REACHED"
        finally:
            a.close()
            b.close()
        assert reset_when_free(server.url).done is False  # the closed sessions' slots free up


def reset_when_free(url: str, tries: int = 50):
    """Reset a new session, retrying while the server is still closing earlier ones."""
    from websockets.exceptions import ConnectionClosed

    for _ in range(tries):
        try:
            with GenericEnvClient(base_url=url).sync() as client:
                return client.reset(index=0)
        except (RuntimeError, ConnectionClosed):
            time.sleep(0.1)
    raise AssertionError(f"no session slot came free at {url}")


def test_bad_id_and_sessions_fail_before_serving():
    with pytest.raises(gym.error.Error):
        create_app("llm_gym/NoSuchEnv-v0")
    with pytest.raises(ValueError, match="max_sessions"):
        create_app("llm_gym/Arithmetic-v0", max_sessions=0)


# ---------------------------------------------------------------------------- client side
def play_tokens(env: gym.Env, text: str) -> tuple[float, bool, bool, dict]:
    tok = env.unwrapped.tokenizer
    for token in tok.encode(text) + [tok.eos_token_id]:
        _, reward, terminated, truncated, info = env.step(token)
        if terminated or truncated:
            break
    return reward, terminated, truncated, info


@pytest.mark.parametrize("index, correct", [(3, True), (4, False)])
def test_round_trip_reward_equals_the_direct_envs(arithmetic_url, index, correct):
    reply = arithmetic_answer(index) + ("" if correct else "0")
    direct = gym.make("llm_gym/Arithmetic-v0")
    direct.reset(options={"index": index})
    expected = play_tokens(direct, reply)
    env = client_module().make(arithmetic_url)
    try:
        obs, info = env.reset(seed=0, options={"index": index})
        assert env.unwrapped.task.messages == direct.unwrapped.task.messages
        reward, terminated, truncated, info = play_tokens(env, reply)
        assert (reward, terminated, truncated) == expected[:3] == (float(correct), True, False)
        assert info["verifiable_reward"] == reward and info["correct"] is correct
    finally:
        env.close()


def test_round_trip_multi_turn_game_matches_the_direct_env(tictactoe_url):
    direct = gym.make("llm_gym/TicTacToeText-v0")
    env = client_module().make(tictactoe_url)
    try:
        for index in (0, 1):
            direct.reset(options={"index": index})
            env.reset(seed=9, options={"index": index})
            assert env.unwrapped.task.messages == direct.unwrapped.task.messages
            done, returns, turns = False, [0.0, 0.0], 0
            while not done:
                move = first_free_cell(last_env_text(direct))
                r_direct, r_client = play_tokens(direct, move), play_tokens(env, move)
                assert r_client[:3] == r_direct[:3]
                returns[0] += r_direct[0]
                returns[1] += r_client[0]
                done, turns = r_client[1] or r_client[2], turns + 1
                if not done:  # the server's board, appended as the env's turn
                    assert last_env_text(env) == last_env_text(direct)
            assert returns[0] == returns[1] and turns >= 3
            # The server's replies were appended, never re-tokenized: the agent's tokens (one
            # digit and the end-of-turn token per move) are all still there.
            assert int(env.unwrapped._buf.agent_mask[0].sum()) == 2 * turns
    finally:
        env.close()


def last_env_text(env: gym.Env) -> str:
    """The content of the env's last turn (the board), without the template's markers."""
    base = env.unwrapped
    length = int(base._buf.length[0])
    agent = np.flatnonzero(base._buf.agent_mask[0, :length])
    start = int(agent[-1]) + 1 if agent.size else 0
    text = base.tokenizer.decode(base._buf.input_ids[0, start:length].tolist())
    return text.rsplit("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]


def test_vector_entry_point_opens_one_session_per_env(arithmetic_url):
    client_module()
    envs = gym.make_vec("llm_gym/OpenEnv-v0", 2, vectorization_mode="vector_entry_point",
                        base_url=arithmetic_url)
    try:
        envs.reset(seed=0, options={"index": [5, 6]})
        replies = [arithmetic_answer(5), arithmetic_answer(6) + "9"]
        tok = envs.unwrapped.tokenizer
        rows = [tok.encode(r) + [tok.eos_token_id] for r in replies]
        rewards = np.zeros(2)
        done = np.zeros(2, dtype=bool)
        for k in range(max(map(len, rows))):
            actions = np.array([row[min(k, len(row) - 1)] for row in rows])
            _, reward, terminated, truncated, _ = envs.step(actions)
            rewards += np.where(done, 0.0, reward)
            done |= terminated | truncated
        assert done.all() and rewards.tolist() == [1.0, 0.0]
    finally:
        envs.close()
    with pytest.raises(ValueError, match="one server session per env"):
        client_module().make_vec(2, client=object())


def test_shaping_wrappers_and_env_checker_work_on_the_client_env(arithmetic_url):
    from gymnasium.utils.env_checker import check_env

    from llm_gym.wrappers import LengthPenalty

    env = LengthPenalty(client_module().make(arithmetic_url), coef=0.5)
    try:
        env.reset(seed=0, options={"index": 3})
        reward, terminated, _, info = play_tokens(env, arithmetic_answer(3))
        assert terminated and info["reward_components"]["env"] == 1.0
        assert reward == sum(info["reward_components"].values())
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_make_takes_an_openenv_client_and_leaves_it_open(tictactoe_url):
    client = GenericEnvClient(base_url=tictactoe_url)
    env = client_module().make(client, system_prompt="Play well.")
    try:
        env.reset(seed=0)
        messages = env.unwrapped.task.messages
        assert messages[0] == {"role": "system", "content": "Play well."}
        assert "tic-tac-toe" in messages[1]["content"]
    finally:
        env.close()
    sync = env.unwrapped.client
    assert sync.reset(seed=1).done is False  # still open: the caller owns it
    sync.close()


def test_client_errors_name_the_fix(arithmetic_url):
    mod = client_module()
    with pytest.raises(ConnectionError, match="llm-gym serve"):
        mod.make("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="exactly one of base_url"):
        mod.OpenEnvTokenEnv()
    env = mod.make(arithmetic_url, text_key="prompt")
    try:
        with pytest.raises(ValueError, match="no field 'prompt'"):
            env.reset(seed=0)
        # text_key as a function of the observation: a server speaking another schema.
        env.unwrapped.text_key = lambda obs: obs["messages"][-1]["content"].upper()
        env.reset(seed=0, options={"index": 0})
        assert env.unwrapped.task.messages[-1]["content"].startswith("WHAT IS")
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_grpo_trains_on_an_openenv_server():
    from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
    from llm_gym.models import tiny_model

    client_module()
    with ServerThread(create_app("llm_gym/Arithmetic-v0", max_sessions=4)) as server:
        envs = gym.make_vec("llm_gym/OpenEnv-v0", 4, vectorization_mode="vector_entry_point",
                            base_url=server.url, max_length=128, max_new_tokens=8,
                            autoreset_mode="Disabled")
        try:
            agent = GRPOAgent(envs, tiny_model(seed=0)[0],
                              GRPOConfig(group_size=2, prompts_per_batch=2), seed=0)
            metrics: list[dict] = []
            agent.learn(10**6, callback=lambda m: metrics.append(m) or len(metrics) < 2)
        finally:
            envs.close()
    assert len(metrics) == 2 and metrics[-1]["rollout/episodes_sampled"] == 4
