"""The trusted scripts a run starts (the sandbox's bootstrap, the grader), shipped precompiled.

Each script is stdlib-only modules of this package concatenated into one source
(:func:`stdlib_source`) and run by a bare ``python -I -S``. Compiling ~900 lines in every
process cost ~7 ms of each run's start (a quarter of an honest run), so the parent compiles a
script once, and each process gets the bytecode (``marshal``) on a memfd and a three-line loader
as its ``-c`` program. The sandbox runs the parent's own base interpreter, so the bytecode always
matches the interpreter that loads it.
"""

from __future__ import annotations

import functools
import marshal
import os
import re
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).parent
_STRIP = re.compile(r"^(from __future__ import annotations|from llm_gym\.\S+ import .*)$", re.M)
# argv[1] is the memfd holding the bytecode; it is read, closed and dropped from argv, so the
# script sees its own arguments from argv[1] on, as it would under ``python -c SOURCE ARGS``.
LOADER = ("import marshal,os,sys\nfd=int(sys.argv.pop(1))\n"
          "code=b''.join(iter(lambda:os.read(fd,1<<16),b''))\nos.close(fd)\n"
          "exec(marshal.loads(code),{'__name__':'__main__'})\n")


def stdlib_source(*modules: str) -> str:
    """Concatenate stdlib-only modules of this package into one script's source."""
    parts = [_STRIP.sub("", (_HERE / f"{name}.py").read_text()) for name in modules]
    return "from __future__ import annotations\n" + "\n".join(parts)


@dataclass(frozen=True)
class PythonScript:
    """A trusted stdlib-only script: ``python -I -S`` runs ``source`` with ``args``.

    Attributes:
        python: the interpreter (the base interpreter of :func:`~llm_gym.sandbox.runner.
            detect_isolation`).
        source: the script, e.g. from :func:`stdlib_source`.
        args: its command-line arguments.
    """

    python: str
    source: str
    args: tuple[str, ...] = ()

    def command(self, *extra: str) -> tuple[list[str], int]:
        r"""``(argv, fd)``: the child must inherit ``fd`` (pass it on), the caller closes it.

        Example:
            >>> import subprocess, sys
            >>> argv, fd = PythonScript(sys.executable, "import sys; print(sys.argv[1:])",
            ...                         ("a",)).command("b")
            >>> subprocess.run(argv, pass_fds=[fd], capture_output=True, text=True).stdout
            "['a', 'b']\n"
            >>> os.close(fd)
        """
        fd = code_memfd(self.source)
        return [self.python, "-I", "-S", "-c", LOADER, str(fd), *self.args, *extra], fd


@functools.lru_cache(maxsize=8)
def _bytecode(source: str) -> bytes:
    return marshal.dumps(compile(source, "<llm_gym.sandbox script>", "exec"))


def code_memfd(source: str) -> int:
    """A memfd (inherited by children) holding ``source`` compiled to bytecode."""
    return memfd(_bytecode(source))


def memfd(data: bytes) -> int:
    """A memfd holding ``data``, read from the start and inherited by children (no CLOEXEC).

    Programs, bytecode and a peer's stdin reach a run this way: never through a shared place
    on disk.
    """
    fd = os.memfd_create("llm_gym_sandbox", 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
