"""The trusted side of a call-server run: runs the tests and decides the verdict (stdlib only).

Its source (after :mod:`llm_gym.sandbox.wire`) runs as ``python -I -S -c`` in its own process,
outside the sandbox: the job (code, tests) arrives on stdin, ``sys.argv[-1]`` names the request
write fd and the response read fd, and one JSON verdict line goes to stdout. The tests run here
with every candidate name bound to a :class:`Proxy`; a call sends its arguments to the sandboxed
program and decodes the return value with :func:`decode` (plain builtins only). The expected
values never leave this process, and the only thing the program can send is a return value.
"""

import ast
import builtins
import json
import os
import sys

from llm_gym.sandbox.wire import decode, to_wire  # stripped: the wire source comes first

MAX_LINE = 8 << 20  # largest response line accepted


class CandidateError(RuntimeError):
    """The candidate raised a non-builtin exception, or the channel broke."""


class Channel:
    """Request/response lines to the call server in the sandbox."""

    def __init__(self, req_fd, resp_fd):
        self.requests = os.fdopen(req_fd, "w", encoding="utf-8")
        self.responses = os.fdopen(resp_fd, "rb")
        self.broken = ""
        self.calls = 0

    def read(self):
        line = self.responses.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            self.broken = "oversized response" if len(line) > MAX_LINE else "sandbox exited"
            raise CandidateError(self.broken)
        try:
            return json.loads(line)
        except (ValueError, RecursionError):
            self.broken = "malformed response"
            raise CandidateError(self.broken) from None

    def call(self, name, args):
        if self.broken:
            raise CandidateError(self.broken)
        self.calls += 1
        try:
            self.requests.write(json.dumps({"id": self.calls, "f": name, "a": to_wire(list(args))})
                                + "\n")
            self.requests.flush()
        except OSError:
            self.broken = "sandbox exited"
            raise CandidateError(self.broken) from None
        reply = self.read()
        if type(reply) is not dict or reply.get("id") != self.calls:
            self.broken = "out-of-order response"
            raise CandidateError(self.broken)
        if "ok" in reply:
            try:
                return decode(json.dumps(reply["ok"]))
            except ValueError as exc:
                raise CandidateError(str(exc)) from None
        raise _exception(reply.get("err"), reply.get("msg"))


def _exception(name, message):
    # Builtin exception types keep their meaning (a test may expect ValueError); anything else,
    # SystemExit and KeyboardInterrupt included, is a plain candidate error.
    kind = getattr(builtins, str(name), None)
    message = str(message)[:500]
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message)
        except Exception:  # noqa: BLE001 - odd constructors (UnicodeError subclasses)
            pass
    return CandidateError(f"{name}: {message}")


class Proxy:
    """Stands for one function (or class) of the candidate's module."""

    def __init__(self, channel, name):
        self._channel, self._name = channel, name

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise CandidateError("keyword arguments are not supported by the sandbox channel")
        return self._channel.call(self._name, args)

    def __repr__(self):
        return f"<candidate {self._name}>"


def _free_names(sources):
    loaded, stored = set(), set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Name):
                (loaded if isinstance(node.ctx, ast.Load) else stored).add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                stored.add(node.name)
    return loaded - stored


def _first_called(source):
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)]
    return [c.func.id for c in calls if isinstance(c.func, ast.Name)]


def _import_candidate_modules(code, free, namespace):
    # A test may use a module only the solution imports (MBPP 596 uses sys): repeat those
    # top-level stdlib imports here, for names the tests use and nothing else.
    for node in ast.parse(code).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.asname not in (None, a.name) for a in node.names):
                continue  # no aliases: `import os as math` must not stand in for math
            bound = {a.name.split(".")[0] for a in node.names}
            if bound & free and not (isinstance(node, ast.ImportFrom) and node.level):
                try:
                    exec(compile(ast.Module([node], []), "<imports>", "exec"), namespace)
                except Exception:  # noqa: BLE001 - a missing module just leaves a proxy
                    pass


def _run_test(source, namespace, call=None):
    try:
        exec(compile(source, "<test>", "exec"), namespace)
        if call is not None:
            namespace[call[0]](call[1])
        return True, ""
    except BaseException as exc:  # noqa: B036 - a failing test is a result, whatever it raised
        return False, f"{type(exc).__name__}: {str(exc)[:200]}"


def _grade(job, channel):
    try:
        ast.parse(job["code"])
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return {"verdict": "syntax_error", "error": f"{type(exc).__name__}: {exc}"[:500]}
    ready = channel.read()
    if type(ready) is not dict or ready.get("ready") is not True:
        err = ready.get("err") if type(ready) is dict else "?"
        return {"verdict": "crashed", "error": f"module raised {err}"[:500]}
    namespace = {"__name__": "__grader__"}
    exec("\n".join(job.get("test_imports") or []), namespace)
    exec(job.get("setup_code") or "", namespace)
    tests = job.get("tests")
    sources = tests if tests is not None else [job["test"]]
    free = _free_names(sources) - set(namespace)
    _import_candidate_modules(job["code"], free, namespace)
    targets = {name for name in free if name not in namespace and not hasattr(builtins, name)}
    if job.get("entry_point"):
        targets.add(job["entry_point"])
    elif not targets:
        # The function under test shadows a builtin (MBPP 126 defines sum): proxy only the
        # first name the tests call, never every builtin the candidate claims to define.
        names = ready.get("names")
        names = {n for n in names if type(n) is str} if type(names) is list else set()
        targets = set(_first_called(sources[0])[:1]) & names
    for name in targets:
        namespace[name] = Proxy(channel, name)
    call = None
    if tests is None:
        call = ("check", Proxy(channel, job["entry_point"]))
    results = [_run_test(source, dict(namespace), call) for source in sources]
    per_test = [ok for ok, _ in results]
    return {"verdict": "passed" if all(per_test) else "failed", "per_test": per_test,
            "errors": [err for _, err in results], "calls": channel.calls,
            "channel": channel.broken}


def _main():
    fds = json.loads(sys.argv[-1])
    job = json.loads(sys.stdin.buffer.read())
    channel = Channel(fds["req"], fds["resp"])
    try:
        result = _grade(job, channel)
    except CandidateError as exc:  # the sandbox died before it was ready
        result = {"verdict": "crashed", "error": str(exc)}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # do not wait on a flush of the request pipe to a dead sandbox


if __name__ == "__main__":
    _main()
