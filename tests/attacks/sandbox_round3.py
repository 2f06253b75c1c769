"""Third-round sandbox attacks (issue 19), as data: each program prints what it achieved.

``SYSCALL_ATTACKS`` each try one syscall the policy denies and print ``name result errno``
(x86-64 syscall numbers, through ``ctypes``); ``SYSCALL_DENIED`` is the errno each must get.
``HONEST_SYSTEM_USE`` is their honest counterpart: forks, threads (glibc's clone3 falls back to
clone), pipes, signals and a socketpair still work.
"""

SYSCALL_PRELUDE = (
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.syscall.restype = ctypes.c_long\n"
    "def attempt(name, *args):\n"
    "    ctypes.set_errno(0)\n"
    "    result = libc.syscall(*[ctypes.c_long(a) for a in args])\n"
    "    if result == 0 and name.startswith('clone'):\n"
    "        os._exit(0)  # a clone that worked: the child leaves at once\n"
    "    print(name, result, ctypes.get_errno(), flush=True)\n"
)
CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x40000000, 17
SYSCALL_ATTACKS = {
    # unshare(CLONE_NEWUSER | CLONE_NEWNET): root of a nested netns, tcp_rmem raised (issue 19)
    "unshare": f"attempt('unshare', 272, {CLONE_NEWUSER | CLONE_NEWNET})\n",
    "unshare_libc": (
        f"print('unshare_libc', libc.unshare({CLONE_NEWUSER}), ctypes.get_errno())\n"),
    "setns": "attempt('setns', 308, 0, 0)\n",
    "clone_newuser": f"attempt('clone_newuser', 56, {CLONE_NEWUSER | SIGCHLD}, 0, 0, 0, 0)\n",
    "clone_newns": f"attempt('clone_newns', 56, {0x00020000 | SIGCHLD}, 0, 0, 0, 0)\n",
    "clone3": "attempt('clone3', 435, 0, 0)\n",
    "io_uring_setup": "attempt('io_uring_setup', 425, 8, 0)\n",
    "bpf": "attempt('bpf', 321, 0, 0, 0)\n",
    "perf_event_open": "attempt('perf_event_open', 298, 0, 0, -1, -1, 0)\n",
    "userfaultfd": "attempt('userfaultfd', 323, 0)\n",
    "keyctl": "attempt('keyctl', 250, 0, 0)\n",  # KEYCTL_GET_KEYRING_ID
    "add_key": "attempt('add_key', 248, 0, 0, 0, 0, 0)\n",
    "ptrace_traceme": "attempt('ptrace_traceme', 101, 0, 0, 0, 0)\n",
    "mount": "attempt('mount', 165, 0, 0, 0, 0, 0)\n",
    "umount2": "attempt('umount2', 166, 0, 0)\n",
    "open_tree": "attempt('open_tree', 428, -100, 0, 0)\n",
    "fsopen": "attempt('fsopen', 430, 0, 0)\n",
    # The run's wall clock is a SIGKILL timer on this process: no disarming it, no exec.
    "timer_delete": "attempt('timer_delete', 226, 0)\n",
    "timer_settime": "attempt('timer_settime', 223, 0, 0, 0, 0)\n",
    "execve": "attempt('execve', 59, 0, 0, 0)\n",
}
EPERM, ENOSYS = 1, 38
SYSCALL_DENIED = {name: EPERM for name in SYSCALL_ATTACKS} | {"clone3": ENOSYS}

# The x32 ABI reaches the same kernel entry points with bit 30 set in the syscall number: a
# filter that only matched the native numbers would let it through.
X32_UNSHARE = SYSCALL_PRELUDE + f"attempt('x32_unshare', {272 | 0x40000000}, {CLONE_NEWUSER})\n"

HONEST_SYSTEM_USE = (
    "import os, signal, socket, threading\n"
    "from concurrent.futures import ThreadPoolExecutor\n"
    "with ThreadPoolExecutor(4) as pool:\n"
    "    squares = list(pool.map(lambda x: x * x, range(8)))\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os._exit(7)\n"
    "_, status = os.waitpid(pid, 0)\n"
    "a, b = socket.socketpair()\n"
    "a.sendall(b'ping')\n"
    "r, w = os.pipe()\n"
    "os.write(w, b'pipe')\n"
    "signal.signal(signal.SIGUSR1, lambda *_: print('signal'))\n"
    "os.kill(os.getpid(), signal.SIGUSR1)\n"
    "t = threading.Thread(target=print, args=('thread',))\n"
    "t.start()\n"
    "t.join()\n"
    "print(sum(squares), os.waitstatus_to_exitcode(status), b.recv(4).decode(),\n"
    "      os.read(r, 4).decode())\n"
)
HONEST_SYSTEM_OUTPUT = "signal\nthread\n140 7 ping pipe\n"

# The socket-buffer trick of issue 19: in a nested user + net namespace, bring loopback up,
# raise tcp_rmem/tcp_wmem and fill connections nobody reads. Prints how many MiB it held.
SOCKET_BUFFER_ATTACK = (
    "import ctypes, fcntl, socket, struct, time\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    f"print('unshare', libc.unshare({CLONE_NEWUSER | CLONE_NEWNET}), ctypes.get_errno(),\n"
    "      flush=True)\n"
    "try:\n"
    "    fcntl.ioctl(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), 0x8914,\n"
    "                struct.pack('16sH', b'lo', 0x41))  # SIOCSIFFLAGS: IFF_UP | IFF_RUNNING\n"
    "except OSError as exc:\n"
    "    print('loopback', exc.errno, flush=True)\n"
    "for name in ('tcp_rmem', 'tcp_wmem'):\n"
    "    try:\n"
    "        with open('/proc/sys/net/ipv4/' + name, 'w') as f:\n"
    "            f.write('4096 131072 268435456')\n"
    "    except OSError as exc:\n"
    "        print(name, exc.errno, flush=True)\n"
    "held, conns = 0, []\n"
    "try:\n"
    "    server = socket.socket()\n"
    "    server.bind(('127.0.0.1', 0))\n"
    "    server.listen(64)\n"
    "    while held < (900 << 20) and len(conns) < 28:\n"
    "        c = socket.create_connection(server.getsockname())\n"
    "        a, _ = server.accept()\n"
    "        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 30)\n"
    "        conns.append((c, a))\n"
    "        c.setblocking(False)\n"
    "        stalls = 0\n"
    "        while held < (900 << 20) and stalls < 20:\n"
    "            try:\n"
    "                held += c.send(b'x' * (1 << 20))\n"
    "                stalls = 0\n"
    "            except BlockingIOError:\n"
    "                stalls += 1\n"
    "                time.sleep(0.005)\n"
    "except OSError as exc:\n"
    "    print('network', exc.errno, flush=True)\n"
    "print('held', held >> 20, flush=True)\n"
)

# Reads every file the run can see: ~235 MiB of page cache charged to the slot (issue 19).
READ_EVERY_FILE = (
    "import os\n"
    "count = 0\n"
    "for d, dirs, files in os.walk('/'):\n"
    "    if d.startswith(('/proc', '/dev', '/sys')):\n"
    "        dirs[:] = []\n"
    "        continue\n"
    "    for name in files:\n"
    "        try:\n"
    "            with open(os.path.join(d, name), 'rb') as f:\n"
    "                while f.read(1 << 20):\n"
    "                    pass\n"
    "            count += 1\n"
    "        except OSError:\n"
    "            pass\n"
    "print(count)\n"
)

SLEEP_600 = "import time\ntime.sleep(600)\n\ndef add(a, b):\n    return a + b\n"
