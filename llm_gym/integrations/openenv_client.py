"""An OpenEnv env server played as an llm_gym token env (``llm_gym/OpenEnv-v0``).

:class:`OpenEnvTokenEnv` holds one OpenEnv WebSocket session (``openenv.core.GenericEnvClient``
wrapped by its ``SyncEnvClient``). The agent writes tokens one step at a time, as in every token
env; when it ends its turn the reply text goes to the server as the action
(``{"message": reply}`` by default) and the server's observation text is *appended* as the env's
turn with the tokenizer's chat template (:meth:`~llm_gym.token_env.TokenEnv.apply_turn`): the
conversation is never re-tokenized, so the agent trains on exactly the tokens it wrote. The
server's ``reward`` is the turn's reward, its ``done`` ends the episode.

The observation's text is read from ``messages`` (a list of ``{role, content}``, what
``llm-gym serve`` sends) or from the field ``text_key`` names (``"prompt"`` for OpenEnv's
TextArena env), or by a function of the observation dict.

``gym.make("llm_gym.integrations.openenv:llm_gym/OpenEnv-v0", base_url=url)`` works with no
import (Gymnasium imports the module first); ``gym.make_vec(..., vectorization_mode=
"vector_entry_point")`` opens one session per env and sends a batch's ended turns concurrently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium as gym

from llm_gym.registration import register_openenv
from llm_gym.token_env import EndedTurn, Task, TokenEnv, TurnResult
from llm_gym.tokenizers import Message, Tokenizer

ENV_ID = "llm_gym/OpenEnv-v0"
# The reset keys every step's info repeats (TokenEnv.base_info): the client's own, not the
# server's (which counts the server's tokens).
_CLIENT_INFO = frozenset({"task_index", "prompt_tokens"})


class OpenEnvTokenEnv(TokenEnv):
    """A token env whose turns are played against an OpenEnv server.

    ## Description
    Each episode is one episode of the server's env, in one WebSocket session. The opening
    observation becomes the prompt (with `system_prompt` first, if given); each reply the agent
    ends is sent as the action; the server's next observation is appended as the env's turn.

    ## Action Space
    `Discrete(vocab_size)`: one token per step.

    ## Observation Space
    `Dict` of `input_ids`, `attention_mask`, `agent_mask`, each of shape `(max_length,)`.

    ## Rewards
    The server's reward of each reply (None counts 0), on the turn's last token; 0 elsewhere.
    `info` holds the server's step `info`, `reward_components` and `verifiable_reward` when the
    server sends them (llm_gym's own server does).

    ## Episode End
    Terminated when the server says `done` (truncated instead when it also says `truncated`);
    truncated when a reply reaches `max_new_tokens` (nothing is sent) or a server turn does not
    fit `max_length`.

    ## Arguments
    * `base_url`: the server (`http://host:port` or `ws://...`); or
    * `client`: an OpenEnv `EnvClient` (async) or `SyncEnvClient`, left open by `close()`.
    * `action_key` ("message"): the action field the reply goes in, or a function of the reply
      that builds the action (typed clients).
    * `text_key` (None): the observation field holding the text, or a function of the
      observation dict; None reads `messages`.
    * `reset_kwargs`: extra keyword arguments of every server reset. The server's seed is drawn
      from `np_random`; `options={"index": i}` is sent as `index=i`.
    * `system_prompt`, `tokenizer`, `max_length` (2048), `max_new_tokens` (256), `render_mode`,
      `message_timeout_s` (60).

    ## Version History
    * v0: first version (issue 21).
    """

    def __init__(
        self,
        base_url: str | None = None,
        client: Any = None,
        action_key: str | Callable[[str], Any] = "message",
        text_key: str | Callable[[dict[str, Any]], str] | None = None,
        reset_kwargs: Mapping[str, Any] | None = None,
        system_prompt: str | None = None,
        tokenizer: str | Tokenizer | Any | None = None,
        max_length: int = 2048,
        max_new_tokens: int = 256,
        render_mode: str | None = None,
        message_timeout_s: float = 60.0,
    ) -> None:
        if (base_url is None) == (client is None):
            raise ValueError("pass exactly one of base_url= (e.g. 'http://127.0.0.1:8000') "
                             "and client= (an OpenEnv EnvClient)")
        super().__init__(tokenizer, max_length, max_new_tokens, render_mode)
        self.action_key, self.text_key = action_key, text_key
        self.reset_kwargs = dict(reset_kwargs or {})
        self.system_prompt = system_prompt
        self.base_url = base_url
        self._owns_client = client is None
        self.client = connect(base_url, message_timeout_s) if client is None else as_sync(client)

    # ------------------------------------------------------------------ TokenEnv hooks
    def sample_task(self, index: int | None) -> Task:
        kwargs = {**self.reset_kwargs, "seed": int(self.np_random.integers(2**31))}
        if index is not None:
            kwargs["index"] = index
        obs = as_dict(self.client.reset(**kwargs).observation)
        messages = self.observation_messages(obs)
        if self.system_prompt:
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        return Task(messages=messages, index=index, metadata={"observation": obs})

    def end_turn(self, response: str, response_ids: list[int], finished: bool) -> TurnResult:
        if not finished:  # cut off at its budget: not a reply the agent chose to send
            return TurnResult(reward=0.0, terminated=False, truncated=True)
        action = self.action_key(response) if callable(self.action_key) else {
            self.action_key: response}
        result = self.client.step(action)
        obs = as_dict(result.observation)
        reward = 0.0 if result.reward is None else float(result.reward)
        info = {k: v for k, v in dict(obs.get("info") or {}).items() if k not in _CLIENT_INFO}
        for key in ("reward_components", "verifiable_reward"):
            if obs.get(key) not in (None, {}):
                info[key] = obs[key]
        if result.done:
            truncated = bool(obs.get("truncated", False))
            return TurnResult(reward=reward, terminated=not truncated, truncated=truncated,
                              info=info)
        messages = self.observation_messages(obs)
        role = messages[-1]["role"] if messages else "user"
        return TurnResult(reward=reward, terminated=False, info=info,
                          reply="\n\n".join(m["content"] for m in messages),
                          reply_role=role if role == "tool" else "user")

    def end_turns(self, turns: Sequence[EndedTurn]) -> list[TurnResult]:
        """Send a batch's ended turns concurrently: each row is its own server session."""
        if len(turns) == 1:
            return super().end_turns(turns)
        with ThreadPoolExecutor(len(turns)) as pool:
            return list(pool.map(
                lambda t: t.env.end_turn(t.response, t.response_ids, t.finished), turns))

    def observation_messages(self, obs: dict[str, Any]) -> list[Message]:
        """The chat messages an observation shows the agent (see ``text_key``)."""
        if callable(self.text_key):
            return [{"role": "user", "content": str(self.text_key(obs))}]
        if self.text_key is None:
            messages = obs.get("messages")
            if isinstance(messages, list) and all(
                    isinstance(m, Mapping) and "content" in m for m in messages):
                return [{"role": str(m.get("role", "user")), "content": str(m["content"])}
                        for m in messages]
            raise ValueError(f"the server's observation has no 'messages' list (keys: "
                             f"{sorted(obs)}); pass text_key= naming its text field, e.g. "
                             "text_key='prompt', or a function of the observation dict")
        if self.text_key not in obs:
            raise ValueError(f"the server's observation has no field {self.text_key!r} (keys: "
                             f"{sorted(obs)}); pass text_key= naming its text field")
        return [{"role": "user", "content": str(obs[self.text_key])}]

    def shared_kwargs(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer}

    def close(self) -> None:
        if self._owns_client and self.client is not None:
            self.client.close()
            self.client = None
        super().close()

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("an OpenEnvTokenEnv holds a live server session and cannot be pickled or "
                        "copied; make a new env with the same base_url instead")


def connect(base_url: str, message_timeout_s: float = 60.0) -> Any:
    """A connected synchronous OpenEnv client for ``base_url`` (``GenericEnvClient.sync()``)."""
    from openenv.core import GenericEnvClient

    client = GenericEnvClient(base_url=base_url, message_timeout_s=message_timeout_s).sync()
    try:
        client.connect()
    except ConnectionError as err:
        client.close()
        raise ConnectionError(f"no OpenEnv server answers at {base_url} ({err}); start one, "
                              "e.g. llm-gym serve llm_gym/Arithmetic-v0 --port 8000") from None
    return client


def as_sync(client: Any) -> Any:
    """An OpenEnv ``SyncEnvClient`` for ``client`` (an async ``EnvClient`` or a sync one)."""
    from openenv.core import EnvClient, SyncEnvClient

    if isinstance(client, SyncEnvClient):
        return client
    if isinstance(client, EnvClient):
        return client.sync()
    raise TypeError(f"client must be an OpenEnv EnvClient or SyncEnvClient, got "
                    f"{type(client).__name__}; or pass base_url=")


def as_dict(observation: Any) -> dict[str, Any]:
    """An observation as a dict (``GenericEnvClient`` gives dicts, typed clients models)."""
    if isinstance(observation, Mapping):
        return dict(observation)
    if hasattr(observation, "model_dump"):
        return observation.model_dump()
    raise TypeError(f"cannot read an observation of type {type(observation).__name__}; pass "
                    "text_key= as a function of it")


def make(url_or_client: Any, **kwargs: Any) -> gym.Env:
    """``gym.make("llm_gym/OpenEnv-v0", base_url=url, ...)``, or the env on an OpenEnv client.

    Args:
        url_or_client: ``"http://host:port"`` (or ``ws://``), or an OpenEnv ``EnvClient``.
        **kwargs: the other arguments of :class:`OpenEnvTokenEnv` and of ``gym.make``.

    Example:
        >>> from llm_gym.integrations.openenv_server import ServerThread, create_app
        >>> with ServerThread(create_app("llm_gym/Arithmetic-v0")) as server:
        ...     env = make(server.url)
        ...     obs, info = env.reset(seed=0)
        ...     env.close()
        >>> obs["input_ids"].shape
        (2048,)
    """
    register_openenv()
    if isinstance(url_or_client, str):
        return gym.make(ENV_ID, base_url=url_or_client, **kwargs)
    # Not through gym.make: it deep-copies its kwargs into env.spec, and a live client cannot be
    # copied (Gymnasium warns and leaves spec None).
    return OpenEnvTokenEnv(client=url_or_client, **kwargs)


def make_vec(num_envs: int, **kwargs: Any) -> Any:
    """Vector entry point: one server session per env, in one batched token vector env."""
    from llm_gym.vector import TokenVectorEnv

    if kwargs.get("client") is not None:
        raise ValueError("a vector env needs one server session per env: pass base_url= "
                         "instead of client=")
    return TokenVectorEnv(OpenEnvTokenEnv, num_envs, **kwargs)


register_openenv()
