"""``llm-gym serve``: a real server process, played by OpenEnv's own client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from llm_gym.cli import build_parser, main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_is_a_subcommand_with_its_options():
    args = build_parser().parse_args(["serve", "llm_gym/Arithmetic-v0", "--port", "9001",
                                      "--max-sessions", "3", "--env-kwargs", '{"digits": 2}'])
    assert (args.env_id, args.host, args.port, args.max_sessions) == (
        "llm_gym/Arithmetic-v0", "127.0.0.1", 9001, 3)


@pytest.mark.parametrize("argv, message", [
    (["llm_gym/NoSuch-v0"], "doesn't exist"),
    (["llm_gym/Arithmetic-v0", "--env-kwargs", '{"digitz": 2}'], "did you mean 'digits'"),
    (["llm_gym/Arithmetic-v0", "--env-kwargs", "[1]"], "must be a JSON object"),
    (["llm_gym/Arithmetic-v0", "--max-sessions", "0"], "--max-sessions must be >= 1"),
    (["llm_gym/Arithmetic-v0", "--port", "70000"], "--port must be in"),
])
def test_bad_arguments_fail_in_one_line_before_serving(capsys, argv, message):
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llm-gym serve: error:") and message in err and "\n" not in err


@pytest.mark.slow  # a new Python process that imports OpenEnv (and gradio): ~6 CPU-seconds
def test_served_game_plays_a_whole_episode_over_openenvs_client():
    pytest.importorskip("openenv")
    from openenv.core import GenericEnvClient

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_gym", "serve", "llm_gym/TicTacToeText-v0", "--port",
         str(port), "--max-sessions", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        first = read_line(proc, timeout=120)
        assert first.startswith(f"serving llm_gym/TicTacToeText-v0 at http://127.0.0.1:{port}")
        client = connected(GenericEnvClient, f"http://127.0.0.1:{port}", proc)
        with client:
            result = client.reset(seed=0)
            for _ in range(20):
                board = result.observation["messages"][-1]["content"]
                move = next(ch for ch in board if ch in "123456789")
                result = client.step({"message": move})
                if result.done:
                    break
        assert result.done and result.observation["info"]["outcome"] in {"win", "draw", "loss"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def connected(client_class, url: str, proc: subprocess.Popen, timeout: float = 60.0):
    """A connected sync client; the server prints its line just before uvicorn binds."""
    deadline = time.monotonic() + timeout
    while True:
        client = client_class(base_url=url).sync()
        try:
            return client.connect()
        except ConnectionError:
            client.close()
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The process's first line of output, or fail after ``timeout`` seconds."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        raise AssertionError(f"llm-gym serve printed nothing in {timeout} s")
    return box[0]
