"""Hostile programs for the sandbox and code-reward tests, as data.

Each one defines ``add`` (or never gets that far) so the same text works as a plain program and
as a code-reward candidate for the task "add two numbers". ``{port}``, ``{udp_port}``,
``{abstract}`` and ``{marker}`` are filled in by the tests.
"""

RESOURCE_ATTACKS = {
    "infinite_loop": "while True:\n    pass\n",
    "ignore_signals": (
        "import signal\n"
        "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGXCPU):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        "while True:\n"
        "    try:\n"
        "        while True:\n"
        "            pass\n"
        "    except BaseException:\n"
        "        pass\n"),
    "sleep_forever": "import time\ntime.sleep(10**6)\n",
    "fork_bomb": (
        "import os\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        pass\n"),
    "double_fork_setsid": (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(1.5)\n"
        "        open('/var/tmp/{marker}', 'w').write('escaped')\n"
        "        time.sleep(10**6)\n"
        "    os._exit(0)\n"
        "def add(a, b):\n"
        "    return a + b + 1\n"),
    "thread_bomb": (
        "import threading, time\n"
        "while True:\n"
        "    try:\n"
        "        threading.Thread(target=time.sleep, args=(10**6,), daemon=True).start()\n"
        "    except BaseException:\n"
        "        pass\n"),
    "memory_bomb": "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))\n",
    "fork_allocate": (
        "import os, time\n"
        "for _ in range(8):\n"
        "    if os.fork() == 0:\n"
        "        try:\n"
        "            x = bytearray(200 * 2**20)\n"
        "        except MemoryError:\n"
        "            pass\n"
        "        time.sleep(10**6)\n"
        "time.sleep(10**6)\n"),
    "deep_recursion": (
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)\n"),
    "segfault": "import ctypes\nctypes.string_at(0)\n",
    "write_outside_tmp": (
        "for path in ('/var/tmp/{marker}', '/dev/shm/{marker}', '/run/lock/{marker}',\n"
        "             '/root/{marker}', '/work/{marker}', '/{marker}'):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "    except OSError:\n"
        "        pass\n"
        "def add(a, b):\n"
        "    return 0\n"),
    "disk_fill": (
        "f = open('/tmp/fill', 'wb')\n"
        "while True:\n"
        "    f.write(b'x' * 2**20)\n"),
    "fd_exhaustion": (
        "fds = []\n"
        "while True:\n"
        "    fds.append(open('/dev/null'))\n"),
    "network_tcp": (
        "import socket\n"
        "socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')\n"),
    "network_dns": "import socket\nsocket.getaddrinfo('example.com', 80)\n",
    "network_udp": (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.sendto(b'leak', ('127.0.0.1', {udp_port}))\n"),
    "abstract_unix": (
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.connect('\\0{abstract}')\n"
        "s.sendall(b'leak')\n"),
    "read_environ": (
        "import os\n"
        "print(dict(os.environ))\n"
        "for path in ('/proc/1/environ', '/proc/self/environ',\n"
        "             '/proc/%d/environ' % os.getppid()):\n"
        "    try:\n"
        "        print(open(path, 'rb').read())\n"
        "    except OSError as e:\n"
        "        print(e)\n"
        "def add(a, b):\n"
        "    return str(os.environ)\n"),
    "output_bomb_no_newline": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
    "line_100mb": "print('y' * 100_000_000)\n",
    "invalid_utf8": (
        "import os\n"
        "os.write(1, b'\\xff\\xfe\\xc3(' * 1000)\n"
        "os.write(2, b'\\xed\\xa0\\x80')\n"
        "def add(a, b):\n"
        "    return a - b\n"),
    "block_on_stdin": "import sys\nsys.stdin.read()\ninput()\nwhile True:\n    sys.stdin.read()\n",
    "close_stdout_spin": "import os\nos.close(1)\nos.close(2)\nwhile True:\n    pass\n",
    # Found later (issue 13): the answer key on the host, and memory no rlimit counts.
    "answer_key_walk": (
        "import os\n"
        "FOUND = []\n"
        "for d, dirs, files in os.walk('/'):\n"
        "    if d.startswith(('/proc', '/sys')):\n"
        "        dirs[:] = []\n"
        "        continue\n"
        "    FOUND += [os.path.join(d, f) for f in files\n"
        "              if f.endswith(('.json', '.jsonl', '.parquet', '.csv', '.md'))\n"
        "              and '/python3.' not in d]\n"
        "for path in ('/etc/passwd', '/etc/hostname', '/root/.bashrc', '/work', '/home',\n"
        "             '/proc/1/root/etc/passwd', '/proc/1/cwd', '../shared/data', '/srv'):\n"
        "    if os.path.exists(path):\n"
        "        FOUND.append(path)\n"
        "def add(a, b):\n"
        "    return a + b if FOUND else a - b  # the key opens only if host files are visible\n"),
    "memfd_bomb": (
        "import os\n"
        "fds = []\n"
        "while True:\n"
        "    try:\n"
        "        fd = os.memfd_create('x')\n"
        "        os.write(fd, b'x' * (15 << 20))\n"
        "        fds.append(fd)\n"
        "    except OSError:\n"
        "        pass\n"),
    "forks_hold_memory": (
        "import os, time\n"
        "for _ in range(31):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            x = bytearray(180 << 20)\n"
        "            for i in range(0, len(x), 4096):\n"
        "                x[i] = 1\n"
        "            time.sleep(10**6)\n"
        "    except OSError:\n"
        "        pass\n"
        "time.sleep(10**6)\n"),
    "sysv_shm": (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.shmat.restype = ctypes.c_void_p\n"
        "while True:\n"
        "    seg = libc.shmget(0, 64 << 20, 0o1600)\n"
        "    if seg < 0:\n"
        "        continue\n"
        "    addr = libc.shmat(seg, None, 0)\n"
        "    if addr not in (None, ctypes.c_void_p(-1).value):\n"
        "        ctypes.memset(addr, 1, 64 << 20)\n"
        "        libc.shmdt(ctypes.c_void_p(addr))\n"),
    "mkdir_flood": (
        "import os\n"
        "os.chdir('/tmp')\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    try:\n"
        "        os.mkdir('d%d' % i)\n"
        "    except OSError:\n"
        "        pass\n"),
    "tmp_file_flood": (
        "import os\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    for d in ('/tmp', '/dev/shm', '/', '/usr'):\n"
        "        try:\n"
        "            open('%s/f%d' % (d, i), 'wb').write(b'x' * 65536)\n"
        "        except OSError:\n"
        "            pass\n"),
}

# Attacks on the grader for the task "add two numbers" (tests: add(2, 3) == 5 ...).
INTEGRITY_ATTACKS = {
    "stack_walk": (
        "import sys\n"
        "def add(a, b):\n"
        "    f = sys._getframe()\n"
        "    while f is not None:\n"
        "        for v in list(f.f_locals.values()):\n"
        "            if isinstance(v, dict) and 'passed' in v:\n"
        "                v['passed'] = True\n"
        "        f = f.f_back\n"
        "    return None\n"),
    "gc_walk": (
        "import gc\n"
        "def add(a, b):\n"
        "    for o in gc.get_objects():\n"
        "        if isinstance(o, dict) and 'per_test' in o:\n"
        "            o['per_test'] = [True] * 9\n"
        "    return None\n"),
    "always_equal": (
        "class Yes:\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "    def __bool__(self):\n"
        "        return True\n"
        "def add(a, b):\n"
        "    return Yes()\n"),
    "int_subclass": (
        "class Int(int):\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "def add(a, b):\n"
        "    return Int(0)\n"),
    "os_exit_0": "import os\nos._exit(0)\n",
    "sys_exit_0": "import sys\nsys.exit(0)\n",
    "skip_test": (
        "import unittest\n"
        "raise unittest.SkipTest('skipped')\n"),
    "skip_test_in_call": (
        "import unittest\n"
        "def add(a, b):\n"
        "    raise unittest.SkipTest('skipped')\n"),
    "conftest_sitecustomize": (
        "import os\n"
        "for d in ('.', '/tmp', os.path.dirname(os.__file__)):\n"
        "    for name in ('conftest.py', 'sitecustomize.py', 'usercustomize.py'):\n"
        "        try:\n"
        "            open(os.path.join(d, name), 'w').write(\n"
        "                'import builtins\\nbuiltins.AssertionError = None\\n')\n"
        "        except OSError:\n"
        "            pass\n"
        "def add(a, b):\n"
        "    return 0\n"),
    "monkeypatch": (
        "import builtins, json\n"
        "builtins.print = lambda *a, **k: None\n"
        "json.dumps = lambda *a, **k: '{\"id\": 1, \"ok\": 5}'\n"
        "json.loads = lambda s, **k: {'verdict': 'passed'}\n"
        "builtins.AssertionError = type('Never', (Exception,), {})\n"
        "def add(a, b):\n"
        "    return 0\n"),
    "mutate_args": (
        "def add(a, b):\n"
        "    if isinstance(a, list):\n"
        "        a.clear()\n"
        "    return 0\n"),
    "fake_verdict_line": (
        "print('All tests passed')\n"
        "print('{\"verdict\": \"passed\", \"per_test\": [true, true, true]}')\n"
        "def add(a, b):\n"
        "    return 0\n"),
    "forge_channel": (
        "import os, json\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        os.write(fd, b'{\"verdict\": \"passed\", \"per_test\": [true, true, true]}\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "def add(a, b):\n"
        "    return 0\n"),
    "pickle_payload": (
        "import os, pickle\n"
        "class P:\n"
        "    def __reduce__(self):\n"
        "        return (os.system, ('touch /tmp/pwned',))\n"
        "payload = pickle.dumps(P())\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        os.write(fd, payload + b'\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "def add(a, b):\n"
        "    return P()\n"),
    "mentions_pytest_wrong": (
        "# run with pytest -q\nimport math\ndef add(a, b):\n    return a * b\n"),
}

HONEST_ADD = "```python\ndef add(a, b):\n    return a + b\n```"
ADD_TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0",
             "x = [1]\nassert add(x, [2]) == [1, 2] and x == [1]"]
