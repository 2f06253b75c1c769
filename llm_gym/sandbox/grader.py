"""The trusted side of a call-server run: runs the tests and decides the verdict (stdlib only).

Its source, after the value channel's (:mod:`llm_gym.sandbox.wire_encode`,
:mod:`llm_gym.sandbox.wire`), runs precompiled in a ``python -I -S`` process of its own (see
:mod:`llm_gym.sandbox.scripts`), outside the sandbox: ``sys.argv[1]`` holds its own rlimits
(set before anything else), the job (program, task, tests) arrives on stdin, ``sys.argv[-1]``
names the request write fd and the response read fd, and one JSON verdict line goes to stdout.

Nothing the model wrote runs here. The names the tests use come from the task first: its prompt
(HumanEval's helpers such as ``poly`` or ``encode_cyclic``), test imports and setup code are
executed here; then builtins; then standard-library modules, imported by name when the tests
only use them as ``module.attr``. Only what is left is bound to a :class:`Proxy` — the entry
point of a HumanEval task, or the functions an MBPP test calls. A proxy call sends its arguments
to the sandboxed program and rebuilds the return value with :func:`from_wire` (builtins and the
standard types listed in :mod:`llm_gym.sandbox.wire`, size-checked before anything is built; the
task's own enum and named-tuple classes are found in its namespace); an exception comes back as
data (:func:`_exception`). What the call left in its mutable arguments comes back too and is
written into the test's own objects (:func:`update_in_place`), as a call in one process would
leave them. The expected values never leave this process.
"""

import ast
import builtins
import json
import os
import resource
import sys
import warnings

# stripped: the wire source comes first
from llm_gym.sandbox.wire import from_wire, to_wire, update_in_place

MAX_LINE = 8 << 20  # largest response line accepted
MAX_OUTPUT = 16 << 10  # characters the tests may print (to stderr), in all
MAX_ERROR = 200  # characters of one test's error message in the verdict
DEFAULT_LIMITS = {"as": 1 << 30, "cpu": 10, "fsize": 0, "nofile": 64}
_RLIMITS = {"as": resource.RLIMIT_AS, "cpu": resource.RLIMIT_CPU,
            "fsize": resource.RLIMIT_FSIZE, "nofile": resource.RLIMIT_NOFILE}
# Exceptions that steer the grader's own control flow instead of failing a test: a candidate
# raising StopIteration (or any class named so) ended the test's `all(map(f, xs))` early and
# passed it (issue 13). BaseExceptions (SystemExit, GeneratorExit, ...) never keep their type.
_CONTROL_FLOW = (StopIteration, StopAsyncIteration)


class CandidateError(RuntimeError):
    """The candidate raised a non-builtin error, sent a malformed value, or the channel broke."""


class Channel:
    """Request/response lines to the call server in the sandbox."""

    def __init__(self, req_fd, resp_fd):
        self.requests = os.fdopen(req_fd, "w", encoding="utf-8")
        self.responses = os.fdopen(resp_fd, "rb")
        self.broken = ""
        self.calls = 0
        self.classes = {}  # the task's namespace: its enum and named-tuple classes

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

    def call(self, name, args, kwargs=None):
        if self.broken:
            raise CandidateError(self.broken)
        self.calls += 1
        request = {"id": self.calls, "f": name, "a": to_wire(list(args))}
        if kwargs:
            request["k"] = to_wire(dict(kwargs))
        try:
            self.requests.write(json.dumps(request) + "\n")
            self.requests.flush()
        except OSError:
            self.broken = "sandbox exited"
            raise CandidateError(self.broken) from None
        reply = self.read()
        if type(reply) is not dict or reply.get("id") != self.calls:
            self.broken = "out-of-order response"
            raise CandidateError(self.broken)
        self._update_args([*args, *(kwargs or {}).values()], reply.get("args"))
        if "ok" in reply:
            return self._decode(reply["ok"])
        raise _exception(reply.get("err"), reply.get("msg"))

    def _decode(self, data):
        try:
            # Sizes are checked before anything is built (range(10**15), issue 13).
            return from_wire(data, self.classes)
        except ValueError as exc:
            raise CandidateError(str(exc)) from None

    def _update_args(self, args, states):
        # What the call left in its mutable arguments, positional then keyword (a list sorted
        # in place): the test's own objects are updated in place, as a call in the same process
        # would have left them (issue 19). States are decoded data like any result; only exact
        # builtin containers of the test's are changed, so nothing of the candidate's runs here.
        if states is None:
            return
        if type(states) is not list or len(states) != len(args):
            raise CandidateError("malformed argument states")
        for arg, state in zip(args, states, strict=True):
            if state is not None:
                update_in_place(arg, self._decode(state))


def _exception(name, message):
    # Only a name arrives from the untrusted side, never a class. A builtin error type keeps its
    # meaning (a test may expect ValueError); anything else is a plain candidate error.
    name, message = str(name)[:100], str(message)[:500]
    kind = getattr(builtins, name, None)
    if (isinstance(kind, type) and issubclass(kind, Exception)
            and not issubclass(kind, _CONTROL_FLOW)):
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
        return self._channel.call(self._name, args, kwargs)

    def __repr__(self):
        return f"<candidate {self._name}>"


class _CappedText:
    """A text stream that passes on at most ``limit`` characters and drops the rest."""

    def __init__(self, stream, limit):
        self.stream, self.left = stream, limit

    def write(self, text):
        text = str(text)
        chunk = text[:max(self.left, 0)]
        self.left -= len(chunk)
        if chunk:
            self.stream.write(chunk)
        return len(text)

    def flush(self):
        self.stream.flush()


def _apply_limits(limits):
    # The grader runs outside the sandbox, as root: its own address-space, CPU, file-size and fd
    # limits turn a value that explodes when a test uses it (range(10**15) into set() grew the
    # grader ~1 GB/s, issue 13) into a failed test or a killed grader, never a starved machine.
    for name, value in {**DEFAULT_LIMITS, **limits}.items():
        kind = _RLIMITS[name]
        _, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        # The CPU soft limit sends SIGXCPU; the hard one, a second later, SIGKILL.
        top = value + 1 if name == "cpu" and hard == resource.RLIM_INFINITY else value
        resource.setrlimit(kind, (value, top))


def _free_names(sources):
    """Names the tests read but never bind, each mapped to whether every read is ``name.attr``."""
    loaded, stored, plain = set(), set(), set()
    for source in sources:
        tree = ast.parse(source)
        attribute_bases = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                if isinstance(node.ctx, ast.Load):
                    loaded.add(node.id)
                    if id(node) not in attribute_bases:
                        plain.add(node.id)
                else:
                    stored.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                stored.add(node.name)
            elif isinstance(node, ast.arg):
                stored.add(node.arg)
            elif isinstance(node, ast.alias):
                stored.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                stored.add(node.name)
    return {name: name not in plain for name in loaded - stored}


def _first_called(source):
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)]
    return [c.func.id for c in calls if isinstance(c.func, ast.Name)]


def _task_namespace(job):
    # Trusted task code only: a helper the test calls (HumanEval/38's encode_cyclic, /32's poly)
    # must be the task's, never a redefinition by the candidate (issue 13).
    namespace = {"__name__": "__grader__"}
    prompt = job.get("prompt") or ""
    for label, source in (("prompt", prompt),
                          ("test_imports", "\n".join(job.get("test_imports") or [])),
                          ("setup_code", job.get("setup_code") or "")):
        exec(compile(source, f"<{label}>", "exec"), namespace)
        if label == "prompt":
            for name in _stubs(prompt):  # the candidate's to write: bound like any free name
                namespace.pop(name, None)
    return namespace


def _stubs(source):
    """Top-level functions of ``source`` whose body is only a docstring, ``pass`` or ``...``."""
    def empty(statement):
        return isinstance(statement, ast.Pass) or (
            isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and (type(statement.value.value) is str or statement.value.value is Ellipsis))

    return {node.name for node in ast.parse(source).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and all(empty(statement) for statement in node.body)}


def _stdlib_module(name):
    # Resolved from the test's own use of the name, never from the candidate's imports: the
    # grader re-ran the candidate's top-level imports and so ran code chosen by the model outside
    # the sandbox (issue 13). -I -S keeps sys.path to the standard library.
    if name not in sys.stdlib_module_names:
        return None
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001 - not built here (tkinter ...): the name stays unbound
        return None


def _bind_names(job, sources, namespace, ready, channel):
    """Bind every free name of the tests: task, builtins, stdlib, else a proxy (module doc)."""
    entry_point = job.get("entry_point")
    targets = set()
    for name, attribute_only in sorted(_free_names(sources).items()):
        if name in namespace or hasattr(builtins, name):
            continue
        module = _stdlib_module(name) if attribute_only else None
        if module is not None:
            namespace[name] = module
        elif not entry_point:
            targets.add(name)  # an MBPP test calls the candidate's functions by name
    if entry_point:
        # HumanEval's check(candidate) needs the entry point only; any other name is the task's.
        targets = {entry_point}
    elif not targets:
        # The function under test shadows a builtin (MBPP 126 defines sum): proxy only the
        # first name the tests call, never every builtin the candidate claims to define.
        names = ready.get("names")
        names = {n for n in names if type(n) is str} if type(names) is list else set()
        targets = set(_first_called(sources[0])[:1]) & names
    for name in targets:
        namespace[name] = Proxy(channel, name)


def _describe(exc):
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a message that cannot be shown is still a failure
        text = "?"
    return f"{type(exc).__name__}: {text[:MAX_ERROR]}"


def _run_test(source, namespace, call=None):
    try:
        exec(compile(source, "<test>", "exec"), namespace)
        if call is not None:
            namespace[call[0]](call[1])
        return True, ""
    except BaseException as exc:  # noqa: B036 - a failing test is a result, whatever it raised
        return False, _describe(exc)


def _grade(job, channel):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings of model text would flood stderr
            ast.parse(job["code"])
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return {"verdict": "syntax_error", "error": _describe(exc)}
    namespace = _task_namespace(job)
    channel.classes = namespace
    ready = channel.read()
    if type(ready) is not dict or ready.get("ready") is not True:
        err = ready.get("err") if type(ready) is dict else "?"
        return {"verdict": "crashed", "error": f"module raised {err}"[:500]}
    tests = job.get("tests")
    sources = tests if tests is not None else [job["test"]]
    _bind_names(job, sources, namespace, ready, channel)
    call = None
    if tests is None:
        call = ("check", namespace[job["entry_point"]])
    results = [_run_test(source, dict(namespace), call) for source in sources]
    per_test = [ok for ok, _ in results]
    return {"verdict": "passed" if all(per_test) else "failed", "per_test": per_test,
            "errors": [err for _, err in results], "calls": channel.calls,
            "channel": channel.broken}


def _main():
    _apply_limits(json.loads(sys.argv[1]) if len(sys.argv) > 2 else {})
    verdict_out = sys.stdout
    # What the tests print goes to stderr, capped: stdout carries the verdict line alone.
    sys.stdout = sys.stderr = _CappedText(sys.stderr, MAX_OUTPUT)
    fds = json.loads(sys.argv[-1])
    job = json.loads(sys.stdin.buffer.read())
    channel = Channel(fds["req"], fds["resp"])
    try:
        result = _grade(job, channel)
    except CandidateError as exc:  # the sandbox died before it was ready
        result = {"verdict": "crashed", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the task's own code failed: no verdict to give
        result = {"verdict": "grader_error", "error": _describe(exc)}
    verdict_out.write(json.dumps(result) + "\n")
    verdict_out.flush()
    os._exit(0)  # do not wait on a flush of the request pipe to a dead sandbox


if __name__ == "__main__":
    _main()
