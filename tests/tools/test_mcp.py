"""MCP servers as tools (issue 22): a real MCPServer script over stdio, driven through MCPTools."""

from __future__ import annotations

import os
import pickle
import sys
import textwrap
import time

import pytest

pytest.importorskip("mcp")

from llm_gym.tools import Toolset, collect_tools, run_tool  # noqa: E402
from llm_gym.tools.mcp import MCPToolError, MCPTools, mcp_tools  # noqa: E402

# mcp 2 renamed FastMCP to MCPServer. A tool's own exception text stays on the server unless it
# raises ToolError; any other exception reaches the client as "Error executing tool <name>".
SERVER = textwrap.dedent('''
    import os
    import time

    from mcp.server.mcpserver import Image, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("test", log_level="ERROR")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @server.tool()
    def fail() -> str:
        """Always fails."""
        raise ToolError("broken on purpose")

    @server.tool()
    def die() -> str:
        """Ends the server process."""
        os._exit(1)

    @server.tool()
    def image() -> Image:
        """A picture, not text."""
        return Image(data=b"not really a png", format="png")

    @server.tool()
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool()
    def where() -> str:
        """The working directory and GREETING."""
        return os.getcwd() + " " + os.environ.get("GREETING", "-")

    @server.tool()
    def nap(seconds: float) -> str:
        """Sleep, then answer."""
        time.sleep(seconds)
        return "awake"

    if __name__ == "__main__":
        server.run()
''')


@pytest.fixture(scope="module")
def server_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("mcp") / "server.py"
    path.write_text(SERVER)
    return path


@pytest.fixture(scope="module")
def toolset(server_script):
    # Starting a server costs about a second (the SDK's imports): the tests share this one.
    with mcp_tools([sys.executable, server_script.name], env={"GREETING": "hi"},
                   cwd=str(server_script.parent)) as tools:
        yield tools


@pytest.fixture(scope="module")
def tools(toolset):
    return {tool.name: tool for tool in toolset.tools()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_tools_lists_the_servers_tools_with_their_schemas(toolset, tools):
    assert isinstance(toolset, Toolset)
    assert sorted(tools) == ["add", "die", "echo", "fail", "image", "nap", "pid", "where"]
    add = tools["add"]
    assert add.description == "Add two integers."
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert sorted(add.parameters["required"]) == ["a", "b"]
    assert add.timeout_s == toolset.timeout_s
    assert add.schema()["function"]["name"] == "add"
    flat, sets = collect_tools([toolset])
    assert sets == [toolset] and sorted(tool.name for tool in flat) == sorted(tools)


def test_calls_return_the_servers_text(tools):
    assert tools["add"].function(a=2, b=3) == "5"
    assert tools["echo"].function(text="héllo\nworld") == "héllo\nworld"
    outcome = run_tool(tools["add"], {"a": 40, "b": 2})
    assert outcome.ok and outcome.text == "42"


def test_env_and_cwd_reach_the_server(tools, server_script):
    assert tools["where"].function() == f"{os.path.realpath(server_script.parent)} hi"


def test_an_error_result_raises_with_its_text(tools):
    with pytest.raises(MCPToolError, match="broken on purpose"):
        tools["fail"].function()
    outcome = run_tool(tools["fail"], {})
    assert not outcome.ok and "broken on purpose" in outcome.text
    # Arguments the server rejects come back as an error result too, not a crash.
    assert not run_tool(tools["add"], {"a": "two", "b": 1}).ok


def test_non_text_content_is_refused(tools):
    with pytest.raises(TypeError, match="non-text result"):
        tools["image"].function()
    assert run_tool(tools["image"], {}).error == "exception:TypeError"


def test_a_slow_call_times_out_and_the_server_keeps_serving(toolset, tools):
    running = int(tools["pid"].function())
    toolset.timeout_s = 0.3
    try:
        with pytest.raises(TimeoutError, match="within 0.3 s"):
            toolset.call("nap", seconds=1)
    finally:
        toolset.timeout_s = 10.0
    assert tools["add"].function(a=1, b=2) == "3"
    assert int(tools["pid"].function()) == running


def test_a_dead_server_is_restarted(tools):
    first = int(tools["pid"].function())
    # die kills the server, and the one retry, on a fresh server, kills that one too: the model
    # gets an error result.
    outcome = run_tool(tools["die"], {})
    assert not outcome.ok and outcome.error == "exception:ConnectionError"
    assert "again after a restart" in outcome.text
    assert _wait_gone(first)
    assert tools["add"].function(a=1, b=1) == "2"  # the next call starts a fresh server
    assert int(tools["pid"].function()) != first


def test_pickle_close_and_start_again(toolset, tools):
    running = int(tools["pid"].function())
    copy = pickle.loads(pickle.dumps(toolset))
    assert isinstance(copy, MCPTools)
    assert copy._loop is None and copy._connection is None  # nothing started yet
    assert (copy.command, copy.env, copy.cwd, copy.timeout_s) == (
        toolset.command, toolset.env, toolset.cwd, toolset.timeout_s)
    try:
        first = int(copy.call("pid"))  # the copy starts its own server
        assert first != running
        copy.close()
        copy.close()  # idempotent
        assert not _alive(first)
        assert copy._thread is None  # the event loop thread is gone too
        again = {tool.name: tool for tool in copy.tools()}  # tools() after close starts it again
        second = int(again["pid"].function())
        assert second != first and _alive(second)
    finally:
        copy.close()
    assert not _alive(second)
    assert int(tools["pid"].function()) == running  # the original is untouched


def test_bad_commands_are_refused_with_the_fix():
    with pytest.raises(TypeError, match="list of strings"):
        mcp_tools("python server.py")
    with pytest.raises(ValueError, match="empty"):
        mcp_tools([])
    with pytest.raises(ValueError, match="timeout_s"):
        mcp_tools(["python"], timeout_s=0)
    mcp_tools(["python"]).close()  # never started: a no-op
    with mcp_tools(["/nonexistent/mcp-server"]) as toolset, pytest.raises(FileNotFoundError):
        toolset.tools()
    with mcp_tools([sys.executable, "-c", "pass"]) as toolset, \
            pytest.raises(ConnectionError, match="while starting"):
        toolset.tools()


def test_a_server_stuck_starting_times_out_and_close_stops_it(tmp_path):
    pid_file = tmp_path / "pid"
    stuck = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
    toolset = mcp_tools([sys.executable, "-c", stuck, str(pid_file)], timeout_s=1.0)
    with pytest.raises(TimeoutError, match="tools/list"):
        toolset.tools()
    toolset.close()
    assert not _alive(int(pid_file.read_text()))


def test_missing_sdk_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(ImportError, match=r"pip install 'llm_gym\[tools\]'"):
        mcp_tools(["python", "server.py"])
