"""What runs first inside the sandbox, before the untrusted program (stdlib only).

The source of this module (after :mod:`llm_gym.sandbox.wire`) is passed to
``python -I -S -c``; ``sys.argv[1]`` is a JSON object with the rlimits, the program's file
descriptor and the mode:

* ``"main"`` runs the program as ``__main__`` — a plain untrusted script.
* ``"serve"`` runs it as module ``solution`` and then serves calls: one JSON request line per
  call on the request fd, one JSON response line on the response fd. The grader, in another
  process, decides the verdict; nothing here is trusted, so the program may replace any of it
  without gaining anything but the right to choose its own return values.
"""

import json
import os
import resource
import sys

from llm_gym.sandbox.wire import Ref, _from_wire, to_wire  # stripped: the wire source comes first

_LIMITS = {
    "cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE, "nofile": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE,
}


def _apply_limits(limits):
    # Soft == hard: the program cannot raise them again (no CAP_SYS_RESOURCE in here).
    for name, value in limits.items():
        resource.setrlimit(_LIMITS[name], (value, value))


def _isolate(setup):
    """As root of a fresh user namespace: wait for the id maps, mount, then drop to the slot UID."""
    os.close(setup["ready_fd"])  # the shell before us did the handshake
    os.close(setup["go_fd"])
    for name in ("LLM_GYM_READY", "LLM_GYM_GO"):
        os.environ.pop(name, None)
    import ctypes  # only here: plain runs without namespaces do not pay for it

    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source, target, fstype, flags, data):
        if libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()):
            errno = ctypes.get_errno()
            raise OSError(errno, f"mount {fstype} on {target}: {os.strerror(errno)}")

    mount("proc", "/proc", "proc", 2 | 4 | 8, "")  # nosuid, nodev, noexec
    prefix, hide, stage = setup["prefix"], setup["hide"], setup["stage"]
    if hide:  # Python lives under a directory others cannot enter: re-mount it alone
        mount(prefix, stage, "", 4096, "")  # MS_BIND
        mount("tmpfs", hide, "tmpfs", 2 | 4, "size=1m,mode=755")
        os.makedirs(prefix, exist_ok=True)
        mount(stage, prefix, "", 8192, "")  # MS_MOVE
    mount("tmpfs", "/tmp", "tmpfs", 2 | 4, f"size={setup['tmp_mb']}m,mode=1777")
    for path in ("/var/tmp", "/dev/shm", "/run/lock"):
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", 2 | 4, "size=1m,mode=1777")
    for cap in range(64):  # empty the bounding set; stops at the first unknown capability
        if libc.prctl(24, cap, 0, 0, 0):  # PR_CAPBSET_DROP
            break
    if libc.prctl(38, 1, 0, 0, 0):  # PR_SET_NO_NEW_PRIVS
        os._exit(71)
    uid = setup["uid"]
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # clears every remaining capability


def _read_program(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _serve(namespace, req_fd, resp_fd):
    requests = os.fdopen(req_fd, "rb")
    responses = os.fdopen(resp_fd, "w", encoding="utf-8")
    refs = []
    for line in requests:
        request = None
        try:
            request = json.loads(line)
            args = _resolve(_from_wire(request["a"]), refs)
            value = namespace[request["f"]](*args)
            reply = json.dumps({"id": request["id"], "ok": to_wire(value, refs)},
                               separators=(",", ":"), allow_nan=False)
        except BaseException as exc:  # noqa: B036 - the candidate's errors are results
            call_id = request.get("id") if isinstance(request, dict) else None
            reply = json.dumps({"id": call_id, "err": type(exc).__name__, "msg": str(exc)[:500]})
        responses.write(reply + "\n")
        responses.flush()


def _resolve(value, refs):
    if type(value) is Ref:
        return refs[value.ref_id]
    if type(value) is list:
        return [_resolve(v, refs) for v in value]
    return value


def _main():
    config = json.loads(sys.argv[1])
    if config.get("setup"):
        _isolate(config["setup"])
    _apply_limits(config["limits"])
    source = _read_program(config["program_fd"])
    os.chdir(config.get("cwd", "/tmp"))
    sys.argv = ["program"]
    if config["mode"] == "main":
        exec(compile(source, "<program>", "exec"), {"__name__": "__main__"})
        return
    namespace = {"__name__": "solution"}
    responses = os.fdopen(config["resp_fd"], "w", encoding="utf-8", closefd=False)
    try:
        exec(compile(source, "<solution>", "exec"), namespace)
        names = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("__"))
        ready = {"ready": True, "names": names[:1000]}
    except BaseException as exc:  # noqa: B036 - report why the module failed, then stop
        ready = {"ready": False, "err": type(exc).__name__, "msg": str(exc)[:500]}
    responses.write(json.dumps(ready) + "\n")
    responses.flush()
    if ready["ready"]:
        _serve(namespace, config["req_fd"], config["resp_fd"])


if __name__ == "__main__":
    _main()
