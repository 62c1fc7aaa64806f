"""Cold read rate of a file, buffered (pread after POSIX_FADV_DONTNEED) against O_DIRECT,
sequential in 8 MiB reads and at random offsets in reads of one R1 IQ1_S expert matrix
(7168 x 2048, 2.75 MiB). The measurement behind src/gguf/direct.rs.

    python3 scripts/direct_io_check.py FILE   (a file of a few GiB, e.g. from lowbit synth)
"""
import os, mmap, time, random, sys
path = sys.argv[1]
size = os.path.getsize(path)
chunk = 2_883_584  # one IQ1_S 7168x2048 matrix, rounded to 4 KiB
random.seed(1)
offs = [random.randrange(0, size - chunk) // 4096 * 4096 for _ in range(150)]
def drop():
    fd = os.open(path, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
def run(flags, label, seq=False):
    drop()
    fd = os.open(path, os.O_RDONLY | flags)
    buf = mmap.mmap(-1, 8 << 20)
    t = time.time(); n = 0
    if seq:
        off = 0
        while n < (1 << 30):
            n += os.preadv(fd, [buf], off); off += 8 << 20
    else:
        mv = memoryview(buf)[:chunk]
        for o in offs:
            n += os.preadv(fd, [mv], o)
    dt = time.time() - t
    os.close(fd)
    print(f"{label}: {n/dt/2**20:.0f} MiB/s")
for r in range(2):
    run(0, "seq buffered 8MiB"); run(os.O_DIRECT, "seq direct 8MiB")
    run(0, "random buffered 2.75MiB"); run(os.O_DIRECT, "random direct 2.75MiB")
