"""Any llm_gym env id served through OpenEnv's own HTTP/WebSocket env server.

OpenEnv (``openenv-core``, module ``openenv``) is the env-server convention that TRL, torchforge
and SkyRL consume: a FastAPI app (``openenv.core.env_server.create_app``) whose ``/ws`` WebSocket
gives each client session its own :class:`~openenv.core.env_server.Environment` instance, up to
``max_concurrent_envs`` at once. :class:`LlmGymEnvironment` is that instance for an llm_gym id:

* a **token env** is played through its text face
  (:class:`~llm_gym.wrappers.text.TextInterface`): the action is the whole reply
  (``{"message": "... #### 42"}``); the observation carries the conversation, the env's new chat
  messages (plain content, without template markers), ``reward``, ``done``, ``truncated``, the
  step's ``info``, ``reward_components`` and ``verifiable_reward``;
* a **classic env with a Discrete action space** (the single-agent game views such as
  ``llm_gym/TicTacToe-v0``) takes an action number or name as its message, and observes the
  JSON form of the observation, its ``ansi`` render as text, and the legal actions.

OpenEnv 0.3's wire format drops ``Observation.metadata`` (``serialize_observation`` excludes it),
so what a remote client needs is in fields of :class:`LlmGymObservation`; ``metadata`` holds
``reward_components`` and ``verifiable_reward`` too, for in-process users.

``reset`` takes OpenEnv's ``seed`` and ``episode_id`` and llm_gym's ``index`` (the task item,
``options={"index": i}``: GRPO groups). The HTTP ``/reset`` and ``/step`` endpoints are OpenEnv's
stateless ones (a fresh env per request); play episodes over the WebSocket session (OpenEnv's
``EnvClient``/``GenericEnvClient``, or :func:`llm_gym.integrations.openenv_client.make`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator
from openenv.core.env_server import Action, Environment, Observation, State
from openenv.core.env_server.types import EnvironmentMetadata
from pydantic import Field

from llm_gym.tokenizers import Tokenizer
from llm_gym.wrappers.response import has_token_observations
from llm_gym.wrappers.text import TextInterface

logger = logging.getLogger(__name__)

#: Info keys that have their own observation field (or are TextInterface bookkeeping).
_OWN_FIELDS = frozenset({"new_text", "reward_components"})
_PROBE = "\u2063llm-gym-probe\u2063"


class LlmGymAction(Action):
    """The agent's move: a whole reply (token envs) or an action number or name (classic)."""

    message: str = Field(..., description="the agent's reply; for a classic env an action "
                                          "number or one of its action names")


class LlmGymObservation(Observation):
    """What the env shows after ``reset`` or ``step`` (``done`` and ``reward`` from OpenEnv)."""

    text: str = Field(default="", description="the whole conversation (token envs, chat markers "
                                              "included) or the ansi render (classic envs)")
    new_text: str = Field(default="", description="what the env added since the agent's last "
                                                  "reply, chat markers included")
    messages: list[dict[str, str]] = Field(
        default_factory=list, description="the env's new chat messages ({role, content}): the "
                                          "task's opening messages after reset, then its replies")
    truncated: bool = Field(default=False, description="the episode was cut short "
                                                       "(Gymnasium's truncated); done is set too")
    reward_components: dict[str, float] = Field(
        default_factory=dict, description="named reward terms of shaping wrappers (sum = reward)")
    verifiable_reward: float | None = Field(
        default=None, description="the env's own (unshaped) reward of this step")
    info: dict[str, Any] = Field(default_factory=dict, description="the step's Gymnasium info")
    observation: Any = Field(default=None, description="classic envs: the observation as JSON")
    legal_actions: list[int] | None = Field(
        default=None, description="classic envs with action_masks(): the legal action numbers")
    action_names: list[str] | None = Field(
        default=None, description="classic envs that name their actions: the name of each "
                                  "action number (send a name or a number)")


class LlmGymEnvironment(Environment):
    """One session's llm_gym env, as OpenEnv's server drives it.

    Args:
        env_id: a registered id (``llm_gym/GSM8K-v0``, ``llm_gym/TicTacToe-v0`` ...).
        env_kwargs: keyword arguments of ``gym.make``.
        step_delay_s: seconds each ``step`` sleeps before it returns (benchmarks: a slow env).

    Example:
        >>> env = LlmGymEnvironment("llm_gym/Arithmetic-v0")
        >>> obs = env.reset(seed=0, index=0)
        >>> obs.messages[-1]["role"], obs.done
        ('user', False)
        >>> answer = str(env.env.unwrapped.task.answer)
        >>> result = env.step(LlmGymAction(message=answer))
        >>> result.reward, result.done, result.verifiable_reward
        (1.0, True, 1.0)
    """

    SUPPORTS_CONCURRENT_SESSIONS = True  # each session builds its own env; nothing is shared

    def __init__(self, env_id: str, env_kwargs: Mapping[str, Any] | None = None,
                 step_delay_s: float = 0.0) -> None:
        super().__init__()
        if step_delay_s < 0:
            raise ValueError(f"step_delay_s must be >= 0, got {step_delay_s}")
        self.env_id, self.step_delay_s = env_id, float(step_delay_s)
        kwargs = dict(env_kwargs or {})
        creator = load_env_creator(gym.spec(env_id).entry_point)
        if "ansi" in getattr(creator, "metadata", {}).get("render_modes", []):
            kwargs.setdefault("render_mode", "ansi")  # the text of classic envs
        env = gym.make(env_id, **kwargs)
        self.is_token_env = has_token_observations(env)
        if self.is_token_env:
            env = TextInterface(env)
            self._markers = reply_markers(env.tokenizer)
        elif not isinstance(env.action_space, gym.spaces.Discrete):
            env.close()
            raise ValueError(f"{env_id} has action space {env.action_space}; serving supports "
                             "token envs (played as text) and classic envs with a Discrete "
                             "action space")
        self.env = env
        self._state = State(episode_id=None, step_count=0)

    # ------------------------------------------------------------------ OpenEnv API
    def reset(self, seed: int | None = None, episode_id: str | None = None,
              index: int | None = None, **kwargs: Any) -> LlmGymObservation:
        """Start an episode; ``index`` pins the task item (``options={"index": index}``)."""
        if kwargs:
            raise ValueError(f"reset takes seed, episode_id and index; got also {sorted(kwargs)}")
        options = None if index is None else {"index": index}
        obs, info = self.env.reset(seed=seed, options=options)
        self._state = State(episode_id=episode_id or str(uuid.uuid4()), step_count=0)
        if self.is_token_env:
            messages = [dict(m) for m in self.env.unwrapped.task.messages]
            return self._token_observation(obs, None, False, False, info, messages)
        return self._classic_observation(obs, None, False, False, info)

    def step(self, action: LlmGymAction, timeout_s: float | None = None,
             **kwargs: Any) -> LlmGymObservation:
        """Play one reply (token envs) or one action (classic envs)."""
        if self.is_token_env:
            out = self.env.step(action.message)
        else:
            out = self.env.step(self.parse_action(action.message))
        self._state.step_count += 1
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        if self.is_token_env:
            obs, reward, terminated, truncated, info = out
            new = info.get("new_text", "")
            messages = [reply_message(self._markers, new)] if new else []
            return self._token_observation(obs, reward, terminated, truncated, info, messages)
        return self._classic_observation(*out)

    @property
    def state(self) -> State:
        """OpenEnv's state: the episode id and the steps taken in it."""
        return self._state

    def get_metadata(self) -> EnvironmentMetadata:
        doc = (type(self.env.unwrapped).__doc__ or "").strip().splitlines()
        return EnvironmentMetadata(name=self.env_id, description=doc[0] if doc else self.env_id,
                                   version=self.env_id.rsplit("-", 1)[-1])

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------ helpers
    def parse_action(self, message: str) -> int:
        """The action number a classic env's message names: an action name, else a number.

        Names come first: the games name their moves ``"1"``..``"9"`` for action numbers 0..8.
        """
        space = self.env.action_space
        names = [str(n).lower() for n in getattr(self.env.unwrapped, "action_names", ())]
        text = message.strip().lower()
        if text in names:
            return names.index(text) + int(space.start)
        if text.lstrip("-").isdigit() and space.contains(int(text)):
            return int(text)
        choices = ", ".join(f"{i}={n}" for i, n in enumerate(names)) or f"0..{space.n - 1}"
        raise ValueError(f"{message!r} is no action of {self.env_id}; send one of {choices}")

    def _token_observation(self, text: str, reward: Any, terminated: bool, truncated: bool,
                           info: dict[str, Any], messages: list[dict[str, str]]
                           ) -> LlmGymObservation:
        return self._observation(reward, terminated, truncated, info, text=text,
                                 new_text=info.get("new_text", ""), messages=messages)

    def _classic_observation(self, obs: Any, reward: Any, terminated: bool, truncated: bool,
                             info: dict[str, Any]) -> LlmGymObservation:
        frame = self.env.render() if self.env.render_mode == "ansi" else None
        text = frame if isinstance(frame, str) else str(obs)
        legal = None
        try:
            mask = self.env.get_wrapper_attr("action_masks")()
            legal = [int(a) for a in np.flatnonzero(mask)]
        except AttributeError:
            pass  # no masks: every action is legal
        names = getattr(self.env.unwrapped, "action_names", None)
        return self._observation(reward, terminated, truncated, info, text=text, new_text=text,
                                 messages=[{"role": "user", "content": text}],
                                 observation=jsonable(self.env.observation_space.to_jsonable(
                                     [obs])[0]), legal_actions=legal,
                                 action_names=None if names is None else [str(n) for n in names])

    def _observation(self, reward: Any, terminated: bool, truncated: bool,
                     info: dict[str, Any], **fields: Any) -> LlmGymObservation:
        components = {k: float(v) for k, v in info.get("reward_components", {}).items()}
        verifiable = None
        if reward is not None:
            reward = float(reward)
            verifiable = float(info.get("verifiable_reward", components.get("env", reward)))
        extras = {"reward_components": components, "verifiable_reward": verifiable}
        return LlmGymObservation(
            done=bool(terminated or truncated), reward=reward, truncated=bool(truncated),
            info=jsonable({k: v for k, v in info.items() if k not in _OWN_FIELDS}),
            metadata={"env_id": self.env_id, **extras}, **extras, **fields)


def reply_markers(tokenizer: Tokenizer) -> dict[str, tuple[str, str]]:
    """For the roles an env replies as, the template text before and after a reply's content."""
    markers = {}
    for role in ("user", "tool"):
        try:
            marked = tokenizer.decode(tokenizer.reply_tokens(_PROBE, role=role))
        except (ValueError, NotImplementedError):
            continue  # a template without this role
        head, found, tail = marked.partition(_PROBE)
        if found:
            markers[role] = (head, tail)
    return markers


def reply_message(markers: dict[str, tuple[str, str]], new_text: str) -> dict[str, str]:
    """The env's reply as a chat message: ``new_text`` without the template's markers.

    Example:
        >>> from llm_gym.tokenizers import load_tokenizer
        >>> tok = load_tokenizer("byte")
        >>> new = tok.decode(tok.reply_tokens("Your move.", role="user"))
        >>> reply_message(reply_markers(tok), new)
        {'role': 'user', 'content': 'Your move.'}
    """
    for role, (head, tail) in markers.items():
        if (new_text.startswith(head) and new_text.endswith(tail)
                and len(new_text) >= len(head) + len(tail)):
            return {"role": role, "content": new_text[len(head):len(new_text) - len(tail)]}
    return {"role": "user", "content": new_text}  # a template we cannot read: the raw text


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists, keys as strings.

    Example:
        >>> jsonable({"a": np.int64(3), 1: (np.float32(0.5), None)})
        {'a': 3, '1': [0.5, None]}
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def create_app(env_id: str, env_kwargs: Mapping[str, Any] | None = None, max_sessions: int = 8,
               step_delay_s: float = 0.0) -> Any:
    """OpenEnv's FastAPI app serving ``env_id``: one env per WebSocket session.

    One env is built first (and closed), so a bad id or keyword fails here, not in the first
    session.

    Args:
        env_id: a registered id.
        env_kwargs: keyword arguments of ``gym.make`` for every session's env.
        max_sessions: most concurrent sessions (OpenEnv's ``max_concurrent_envs``); one more
            is refused with OpenEnv's ``CAPACITY_REACHED`` error.
        step_delay_s: seconds each step sleeps (benchmarks).
    """
    from openenv.core.env_server import create_app as openenv_create_app

    if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
        raise ValueError(f"max_sessions must be an int >= 1, got {max_sessions!r}")
    LlmGymEnvironment(env_id, env_kwargs, step_delay_s).close()
    factory = functools.partial(LlmGymEnvironment, env_id, dict(env_kwargs or {}), step_delay_s)
    return openenv_create_app(factory, LlmGymAction, LlmGymObservation, env_name=env_id,
                              max_concurrent_envs=max_sessions)


def serve(env_id: str, host: str = "127.0.0.1", port: int = 8000, max_sessions: int = 8,
          env_kwargs: Mapping[str, Any] | None = None) -> None:
    """Serve ``env_id`` until interrupted (``llm-gym serve``)."""
    import uvicorn

    app = create_app(env_id, env_kwargs, max_sessions)
    quiet_closed_sockets()
    uvicorn.run(app, host=host, port=port, log_level="warning")


class _ClosedSocketFilter(logging.Filter):
    """Drop uvicorn's traceback for a session whose client hung up before the server closed it.

    OpenEnv 0.3's WebSocket handler closes the socket after the client's ``close`` message and
    catches only ``RuntimeError``; with uvicorn 0.3x+ the client is often gone by then and
    Starlette raises ``WebSocketDisconnect`` (harmless: the session was already destroyed).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ != "WebSocketDisconnect"


def quiet_closed_sockets() -> None:
    """Install :class:`_ClosedSocketFilter` on uvicorn's error log (once)."""
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _ClosedSocketFilter) for f in log.filters):
        log.addFilter(_ClosedSocketFilter())


class ServerThread:
    """An OpenEnv app served by uvicorn in a background thread (tests, benchmarks, notebooks).

    Args:
        app: the FastAPI app (:func:`create_app`).
        host: interface to bind.
        port: port to bind; 0 picks a free one (read :attr:`url`).

    Example:
        >>> with ServerThread(create_app("llm_gym/Arithmetic-v0")) as server:
        ...     server.url.startswith("http://127.0.0.1:")
        True
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        quiet_closed_sockets()
        config = uvicorn.Config(app, host=host, port=port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="llm-gym-openenv",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the OpenEnv server did not start on {host}:{port}")
            time.sleep(0.01)
        bound = self._server.servers[0].sockets[0].getsockname()
        self.url = f"http://{host}:{bound[1]}"

    def close(self) -> None:
        """Stop the server and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10.0)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
