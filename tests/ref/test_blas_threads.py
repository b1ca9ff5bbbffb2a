"""Under an address-space limit (ulimit -v) the CLI runs with OPENBLAS_NUM_THREADS=1.

OpenCV links LAPACK, which on Debian is OpenBLAS once numpy or torch brought it in. Its pthread
build (0.3.21 in Debian 12) starts a thread per core when loaded, each mapping a 128 MiB buffer;
under an address-space limit that cannot hold them the threads retry forever and the process never
exits (OpenBLAS issue 5289). The CLI restarts itself once with OPENBLAS_NUM_THREADS=1 before any
work when RLIMIT_AS is finite and the user chose no BLAS thread count; this test watches the running
process's environment (it waits on its --list pipe) and then its exit."""
import os
import resource
import subprocess
import time

from common import CLI, SOURCE, check, finish

FLOWERS = os.path.join(SOURCE, "examples", "flowers")
FILES = sorted(os.path.join(root, f) for root, _, fs in os.walk(FLOWERS) for f in fs if f.endswith(".jpg"))[:8]


def environment_of_a_run(env, limit):
    """Starts `stats --list -` under the limit, reads its environment while it waits for the list,
    then feeds the list; returns (environment, exit code, stdout, stderr)."""
    def preexec():
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    p = subprocess.Popen([CLI, "stats", "--list", "/dev/stdin", "--size", "8", "-q", "--format", "json"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, preexec_fn=preexec)
    # The restart happens before the list is read: poll until the process image is the CLI's and
    # its environment is final (the restart replaces it in place, same pid).
    seen = b""
    for _ in range(200):
        try:
            with open(f"/proc/{p.pid}/environ", "rb") as f:
                seen = f.read()
            with open(f"/proc/{p.pid}/wchan") as f:
                waiting = f.read()
        except OSError:
            break
        if "pipe" in waiting:  # blocked reading the list: past the restart
            break
        time.sleep(0.02)
    out, err = p.communicate(("\n".join(FILES) + "\n").encode(), timeout=120)
    variables = dict(v.split(b"=", 1) for v in seen.split(b"\0") if b"=" in v)
    return variables, p.returncode, out.decode(), err.decode()


base = {k: v for k, v in os.environ.items()
        if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")}
with open(CLI, "rb") as f:
    sanitized = b"__asan_init" in f.read()

ref_env, rc, ref_out, err = environment_of_a_run(base, None)
check(rc == 0 and b"OPENBLAS_NUM_THREADS" not in ref_env, f"no limit: environment untouched ({rc} {err})")

if sanitized:
    print("note: sanitized CLI reserves terabytes of address space: RLIMIT_AS runs skipped")
else:
    limit = 1 << 30
    env, rc, out, err = environment_of_a_run(base, limit)
    check(env.get(b"OPENBLAS_NUM_THREADS") == b"1", f"under RLIMIT_AS: OPENBLAS_NUM_THREADS=1 ({env.get(b'OPENBLAS_NUM_THREADS')})")
    check(rc == 0 and out == ref_out, f"under RLIMIT_AS: the same statistics ({rc} {err})")
    # A user's own choice is kept.
    env, rc, out, err = environment_of_a_run(dict(base, OPENBLAS_NUM_THREADS="2"), limit)
    check(env.get(b"OPENBLAS_NUM_THREADS") == b"2" and rc == 0 and out == ref_out,
          f"a user's OPENBLAS_NUM_THREADS is kept ({env.get(b'OPENBLAS_NUM_THREADS')}, {rc} {err})")

finish()
