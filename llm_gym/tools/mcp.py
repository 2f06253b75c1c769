"""The tools of an MCP server (Model Context Protocol), as :class:`~llm_gym.tools.Tool` records.

:func:`mcp_tools` takes the command that starts a server speaking MCP over stdio
(``["python", "my_server.py"]``, ``["npx", "some-mcp-server"]``) and gives a :class:`MCPTools`
toolset: its :meth:`~MCPTools.tools` are one :class:`~llm_gym.tools.Tool` per tool of the server,
with the server's description and input schema, whose function calls the server and returns the
text of its result. It uses the official MCP Python SDK (``pip install 'llm_gym[tools]'``).

Lifecycle: the server process starts on the first :meth:`~MCPTools.tools` (or call) and runs
until :meth:`~MCPTools.close`; a later call starts it again. The server's stderr (its logs) is
this process's stderr. If the process dies, the call that finds it gone starts a fresh one and is
retried once (a call that itself kills the server therefore runs twice); if the retry fails too,
the call raises, the model gets an error result, and the next call tries a fresh start again.

Trust: the tools of an MCP server run in that server's process, with that server's rights: it
is its own trust boundary, chosen by whoever writes the command, never by the model. The
process gets the SDK's short list of safe environment variables (``PATH``, ``HOME``, ...)
plus ``env``, not the whole environment of the training job.

The SDK is async and the env is not, so every :class:`MCPTools` runs one private asyncio event
loop in a daemon thread. A long-lived task there opens the stdio transport and the
``ClientSession`` (their context managers must be entered and left in one task), reports the
session ready, and waits for a stop event; calls are submitted to the loop with
:func:`asyncio.run_coroutine_threadsafe` and waited for with a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from llm_gym.tools.base import Tool

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Seconds :meth:`MCPTools.close` waits for the SDK's shutdown (close stdin, SIGTERM, SIGKILL;
#: the SDK bounds each step at about 2 s).
_CLOSE_TIMEOUT_S = 10.0


def _sdk() -> Any:
    """The ``mcp`` package, or an ``ImportError`` that says how to install it."""
    try:
        import mcp
    except ImportError as err:
        raise ImportError("mcp_tools needs the MCP SDK: pip install 'llm_gym[tools]'") from err
    return mcp


class MCPToolError(RuntimeError):
    """An MCP tool answered with an error result (``isError``); the message is its text.

    A server written with the SDK's ``MCPServer`` sends an exception's text only when the tool
    raises its ``ToolError``; any other exception reaches the model as "Error executing tool
    <name>" (the SDK keeps a crash's details on the server).
    """


def mcp_tools(command: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: str | None = None, timeout_s: float = 10.0) -> MCPTools:
    """The tools of the MCP server that ``command`` starts (stdio transport).

    Args:
        command: the program and its arguments, e.g. ``["python", "my_server.py"]``.
        env: environment variables for the server, over the SDK's safe defaults.
        cwd: the server's working directory (default: this process's).
        timeout_s: seconds a call may take, server start included, and each tool's
            ``timeout_s``.

    Returns:
        A toolset whose server starts on the first :meth:`MCPTools.tools`.
    """
    return MCPTools(command, env=env, cwd=cwd, timeout_s=timeout_s)


@dataclass
class _Connection:
    """One server process and its session, owned by the task that opened them."""

    ready: asyncio.Future[Any]  # the initialized ClientSession, or the start's error
    stop: asyncio.Event
    task: asyncio.Task[None] | None = None


class MCPTools:
    """An MCP server's tools, with the server process started on demand (a ``Toolset``).

    Pickling keeps only the command, ``env``, ``cwd`` and ``timeout_s``: an unpickled copy (a
    worker of Gymnasium's ``AsyncVectorEnv``) starts its own server on its first call.
    """

    def __init__(self, command: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: str | None = None, timeout_s: float = 10.0) -> None:
        if isinstance(command, str) or not all(isinstance(part, str) for part in command):
            raise TypeError(f"command must be a list of strings, got {command!r}; write e.g. "
                            "mcp_tools(['python', 'my_server.py'])")
        if not command:
            raise ValueError("command is empty; give the program that starts the MCP server")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        _sdk()  # fail at construction, not on the model's first call
        self.command = list(command)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.timeout_s = float(timeout_s)
        self._lock = threading.Lock()  # guards the loop and its thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connection: _Connection | None = None  # touched only on the loop
        self._connect_lock: asyncio.Lock | None = None  # created on the loop
        self._calls: set[asyncio.Task[Any]] = set()  # calls in flight, cancelled by close()

    def __repr__(self) -> str:
        return f"MCPTools({self.command!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"command": self.command, "env": self.env, "cwd": self.cwd,
                "timeout_s": self.timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["command"], env=state["env"], cwd=state["cwd"],  # type: ignore[misc]
                      timeout_s=state["timeout_s"])

    def __enter__(self) -> MCPTools:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def tools(self) -> list[Tool]:
        """Start the server if it is not running and list its tools."""
        listed = self._submit(self._list_tools, "tools/list")
        return [Tool(name=tool.name, description=tool.description or "",
                     parameters=dict(tool.input_schema),
                     function=functools.partial(self.call, tool.name), timeout_s=self.timeout_s)
                for tool in listed]

    def call(self, name: str, /, **arguments: Any) -> str:
        """Call the server's tool ``name`` and return the text of its result.

        Raises:
            MCPToolError: the tool answered with an error result (its text is the message).
            TypeError: the result holds content that is not text (images, audio, resources).
            TimeoutError: no answer within ``timeout_s``.
            ConnectionError: the server died, and died again on the one retry.
        """
        result = self._submit(lambda session: session.call_tool(name, arguments), name)
        texts = [part.text for part in result.content if part.type == "text"]
        if result.is_error:
            raise MCPToolError("\n".join(texts) or f"MCP tool {name!r} failed without a message")
        kinds = sorted({part.type for part in result.content if part.type != "text"})
        if kinds:
            raise TypeError(f"non-text result from MCP tool {name!r} ({', '.join(kinds)}); only "
                            "text reaches the model")
        return "\n".join(texts)

    def close(self) -> None:
        """Stop the server process and the event loop; a later call starts them again."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            if loop is None or thread is None:
                return
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_CLOSE_TIMEOUT_S)
            except concurrent.futures.TimeoutError:
                logger.warning("MCP server %s did not stop within %g s", self.command,
                               _CLOSE_TIMEOUT_S)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_CLOSE_TIMEOUT_S)
                if not thread.is_alive():
                    loop.close()
                # Whatever a timed-out shutdown left belongs to the old loop; start clean.
                self._connection, self._connect_lock, self._calls = None, None, set()

    # -- the sync side: one loop thread, calls submitted with a deadline ------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"mcp-{self.command[0]}",
                                          daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _submit(self, request: Callable[[Any], Awaitable[_T]], what: str) -> _T:
        future = asyncio.run_coroutine_threadsafe(self._with_session(request, what),
                                                  self._ensure_loop())
        try:
            return future.result(self.timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"MCP server {self.command} gave no answer to {what} within "
                               f"{self.timeout_s:g} s") from None

    # -- the async side, on the loop thread ----------------------------------------------------

    async def _list_tools(self, session: Any) -> list[Any]:
        from mcp.types import PaginatedRequestParams

        listed = await session.list_tools()
        tools = list(listed.tools)
        while listed.next_cursor is not None:
            listed = await session.list_tools(
                params=PaginatedRequestParams(cursor=listed.next_cursor))
            tools += listed.tools
        return tools

    async def _with_session(self, request: Callable[[Any], Awaitable[_T]], what: str) -> _T:
        """Run ``request`` on the session; on a dead server, restart it and retry once."""
        task = asyncio.current_task()
        self._calls.add(task)
        try:
            for attempt in (1, 2):  # the first try, then once more on a restarted server
                connection = await self._connect()
                try:
                    return await request(connection.ready.result())
                except Exception as err:
                    if not _connection_lost(err):
                        raise
                    await self._disconnect(connection)  # the next connect starts afresh
                    if attempt == 2:
                        raise ConnectionError(f"MCP server {self.command} exited during {what}, "
                                              "and again after a restart") from err
                    logger.warning("MCP server %s is gone (%s during %s); starting it again",
                                   self.command, err, what)
            raise AssertionError("unreachable: the second attempt returns or raises")
        finally:
            self._calls.discard(task)

    async def _connect(self) -> _Connection:
        """The running server's connection, starting the server first if there is none."""
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            connection = self._connection
            if connection is not None and connection.task is not None and connection.task.done():
                await self._disconnect(connection)  # died while idle
                connection = None
            if connection is None:
                connection = self._connection = self._start()
            try:
                await asyncio.shield(connection.ready)
            except Exception as err:
                await self._disconnect(connection)
                if _connection_lost(err):
                    raise ConnectionError(f"MCP server {self.command} closed the connection while "
                                          "starting; run the command by hand to see why") from err
                raise
            return connection

    def _start(self) -> _Connection:
        """Start the server's task; its ``ready`` resolves to the session or the start's error."""
        loop = asyncio.get_running_loop()
        connection = _Connection(ready=loop.create_future(), stop=asyncio.Event())
        connection.ready.add_done_callback(_mark_read)
        connection.task = loop.create_task(self._serve(connection))
        return connection

    async def _disconnect(self, connection: _Connection | None = None) -> None:
        """Stop a server's task (the SDK closes its stdin, then terminates the process).

        With ``connection``, only if it is still the current one: a concurrent call may have
        replaced it already, and its fresh server must live.
        """
        if connection is not None and connection is not self._connection:
            return
        connection, self._connection = self._connection, None
        if connection is None or connection.task is None:
            return
        connection.stop.set()
        if not connection.ready.done():
            connection.task.cancel()  # stuck starting; the SDK still stops the process (shielded)
        try:
            await connection.task
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # this call is cancelled, not just the task
                raise
        except Exception as err:  # noqa: BLE001 - a dead server's teardown noise, logged
            logger.debug("MCP server %s ended with %r", self.command, err)

    async def _shutdown(self) -> None:
        """Cancel calls still in flight (abandoned after their deadline), then stop the server."""
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        await self._disconnect()

    async def _serve(self, connection: _Connection) -> None:
        """Open the server and its session, hand the session over, and hold both until stop."""
        mcp = _sdk()
        parameters = mcp.StdioServerParameters(command=self.command[0], args=self.command[1:],
                                               env=self.env, cwd=self.cwd)
        try:
            async with mcp.stdio_client(parameters) as (read, write), \
                    mcp.ClientSession(read, write) as session:
                await session.initialize()
                connection.ready.set_result(session)
                await connection.stop.wait()
        except Exception as err:
            if connection.ready.done():
                raise
            connection.ready.set_exception(_unwrap(err))
        finally:
            if not connection.ready.done():  # cancelled while starting
                connection.ready.set_exception(ConnectionError("MCP server start cancelled"))


def _mark_read(future: asyncio.Future[Any]) -> None:
    """Read a start's error, so a waiter that timed out leaves no 'never retrieved' warning."""
    if not future.cancelled():
        future.exception()


def _unwrap(err: BaseException) -> BaseException:
    """The one exception inside nested one-member groups (anyio task groups wrap errors)."""
    while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
        err = err.exceptions[0]
    return err


def _connection_lost(err: BaseException) -> bool:
    """Whether ``err`` says the server process or its pipes are gone (not a tool's error)."""
    import anyio
    from mcp import MCPError
    from mcp.types import CONNECTION_CLOSED

    err = _unwrap(err)
    if isinstance(err, MCPError):
        return err.code == CONNECTION_CLOSED
    return isinstance(err, anyio.ClosedResourceError | anyio.BrokenResourceError
                      | BrokenPipeError | ConnectionResetError | EOFError)
