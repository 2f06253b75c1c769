"""What runs first inside the sandbox, before the untrusted program (stdlib only).

The source of this module, after the value channel's (:mod:`llm_gym.sandbox.wire_encode`,
:mod:`llm_gym.sandbox.wire`), runs in ``python -I -S``, precompiled
(:mod:`llm_gym.sandbox.scripts`); ``sys.argv[1]`` is a JSON object with the rlimits, the
program's file descriptor and the mode:

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

# Both stripped from the script: the confine and wire sources come before this one.
from llm_gym.sandbox.confine import arm_wall, deny_user_namespaces, install_seccomp
from llm_gym.sandbox.wire import Ref, from_wire, may_change, to_wire  # stripped too

_LIMITS = {
    "cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE, "nofile": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE,
}


def _apply_limits(limits):
    # Soft == hard: the program cannot raise them again (no CAP_SYS_RESOURCE in here).
    for name, value in limits.items():
        resource.setrlimit(_LIMITS[name], (value, value))


_MS = {"rdonly": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "remount": 32, "bind": 4096,
       "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21}
# statvfs f_flag bits of a bind source that a read-only remount must keep (the kernel refuses
# to clear flags it locked when the mount came from a more privileged namespace).
_KEEP = ((1024, "noatime"), (2048, "nodiratime"), (4096, "relatime"), (8, "noexec"))
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41}


def _isolate(setup):
    """As root of a fresh user namespace: build an empty root, then drop privileges.

    At level ``"root"`` it first waits for the id maps and ends as the slot's UID; at level
    ``"userns"`` it stays the namespace's only UID with every capability cleared.

    The new root is a tmpfs holding only what the interpreter needs, each piece bound
    read-only: the Python prefix (its site-packages hidden), the directories of the shared
    libraries it loads, a few device nodes, a fresh /proc of the run's own pid namespace and a
    size- and inode-limited /tmp. The host's files (datasets, the project, /root, /etc, other
    processes' /proc) are not in this mount namespace at all after the pivot.
    """
    if setup["level"] == "root":
        os.close(setup["ready_fd"])  # the shell before us did the handshake
        os.close(setup["go_fd"])
        for name in ("LLM_GYM_READY", "LLM_GYM_GO"):
            os.environ.pop(name, None)
    deny_user_namespaces()  # still root of the run's user namespace here
    import ctypes  # only here: plain runs without namespaces do not pay for it

    libc = ctypes.CDLL(None, use_errno=True)

    def check(failed, what):
        if failed:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    def mount(source, target, fstype, flags, data=""):
        check(libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()),
              f"mount {fstype or source} on {target}")

    def bind_readonly(source, target):
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        else:  # a single library file: an empty file is its mount point
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").close()
        mount(source, target, "", _MS["bind"])
        keep = os.statvfs(source).f_flag
        flags = _MS["remount"] | _MS["bind"] | _MS["rdonly"] | _MS["nosuid"] | _MS["nodev"]
        for bit, name in _KEEP:
            flags |= _MS[name] if keep & bit else 0
        mount("", target, "", flags)

    root = setup["root"]
    tmpfs = _MS["nosuid"] | _MS["nodev"]
    mount("tmpfs", root, "tmpfs", tmpfs, "size=1m,nr_inodes=1024,mode=755")
    for path in setup["binds"]:
        bind_readonly(path, root + path)
    for hidden in setup["hidden"]:  # an empty read-only tmpfs over e.g. site-packages
        mount("tmpfs", root + hidden, "tmpfs", tmpfs | _MS["rdonly"], "size=4k,nr_inodes=4")
    for link, target in setup["links"]:
        os.makedirs(os.path.dirname(root + link), exist_ok=True)
        os.symlink(target, root + link)
    os.makedirs(f"{root}/dev", exist_ok=True)
    for device in ("null", "zero", "full", "random", "urandom"):
        open(f"{root}/dev/{device}", "w").close()  # a mount point for the host's node
        mount(f"/dev/{device}", f"{root}/dev/{device}", "", _MS["bind"])
    os.symlink("/proc/self/fd", f"{root}/dev/fd")
    limits = f"size={setup['tmp_mb']}m,nr_inodes={setup['tmp_inodes']}"
    for path, size in (("/tmp", limits), ("/dev/shm", "size=1m,nr_inodes=64")):
        os.makedirs(root + path)
        mount("tmpfs", root + path, "tmpfs", tmpfs, f"{size},mode=1777")
    os.makedirs(root + "/proc")
    mount("proc", root + "/proc", "proc", tmpfs | _MS["noexec"])
    # pivot_root(".", ".") stacks the old root on the new one; detaching it leaves no path to
    # the host's tree in this mount namespace.
    os.chdir(root)
    check(libc.syscall(_PIVOT_ROOT[os.uname().machine], b".", b"."), "pivot_root")
    check(libc.umount2(b".", 2), "detach the old root")  # MNT_DETACH
    os.chdir("/")
    mount("", "/", "", _MS["remount"] | _MS["rdonly"] | tmpfs)
    for cap in range(64):  # empty the bounding set; stops at the first unknown capability
        if libc.prctl(24, cap, 0, 0, 0):  # PR_CAPBSET_DROP
            break
    if libc.prctl(38, 1, 0, 0, 0):  # PR_SET_NO_NEW_PRIVS
        os._exit(71)
    if setup["level"] == "root":
        uid = setup["uid"]
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # clears every remaining capability
    else:  # "userns": one mapped UID only; drop what the namespace's root still holds
        _drop_capabilities(libc)


def _drop_capabilities(libc):
    """Clear the effective, permitted and inheritable capability sets (capset v3)."""
    import ctypes

    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # two all-zero __user_cap_data_struct
    if libc.capset(header, data):
        os._exit(72)


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
        responses.write(_answer(line, namespace, refs) + "\n")
        responses.flush()


def _answer(line, namespace, refs):
    """One response line: the call's value or error, and what it left in its arguments."""
    request, values, sent, reply = None, [], [], {}
    try:
        request = json.loads(line)
        # The candidate's own enum and named-tuple classes receive the test's members.
        args = _resolve(from_wire(request["a"], namespace), refs)
        kwargs = _keywords(request, namespace, refs)
        values, sent = [*args, *kwargs.values()], [*request["a"], *_keyword_wires(request)]
        reply["ok"] = to_wire(namespace[request["f"]](*args, **kwargs), refs)
    except BaseException as exc:  # noqa: B036 - the candidate's errors are results
        reply = {"err": type(exc).__name__, "msg": str(exc)[:500]}
    reply["id"] = request.get("id") if isinstance(request, dict) else None
    try:
        states = _arg_states(values, sent) if values else None
        if states is not None:
            reply["args"] = states
        return json.dumps(reply, separators=(",", ":"), allow_nan=False)
    except BaseException as exc:  # noqa: B036 - e.g. a value json cannot write
        return json.dumps({"id": reply["id"], "err": type(exc).__name__, "msg": str(exc)[:500]})


def _keywords(request, namespace, refs):
    if "k" not in request:
        return {}
    kwargs = from_wire(request["k"], namespace)
    if type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
        raise TypeError("keyword arguments must be a dict with str keys")
    return {k: _resolve(v, refs) for k, v in kwargs.items()}


def _keyword_wires(request):
    # The wire form of each keyword value as sent, in order: what _arg_states compares with.
    return [pair[1] for pair in request["k"]["v"]] if "k" in request else []


def _arg_states(args, sent):
    # A call in the test's own process would leave its changes in the test's objects (a list
    # sorted in place): each mutable argument that the call changed goes back (issue 19).
    # Only plain data goes back; an argument holding opaque candidate objects does not.
    states, changed = [], False
    for arg, before in zip(args, sent, strict=True):
        state = None
        if may_change(arg):
            try:
                state = to_wire(arg)
            except (TypeError, ValueError, RecursionError):
                state = None
            if state == before:
                state = None
        states.append(state)
        changed = changed or state is not None
    return states if changed else None


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
    if config.get("wall"):
        arm_wall(config["wall"])
    if config.get("seccomp"):  # after the privilege drop, before anything of the model runs
        install_seccomp(bytes.fromhex(config["seccomp"]))
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
