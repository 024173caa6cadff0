"""The serve floor: sendfile(2) of a page-cached file to a reader on loopback
TCP, 1 MiB per call. Prints the sender's CPU seconds per GB (this process only;
the reader runs in its own process), the least any zero-copy broker pays here.

    python3 perf/sendfile-floor.py FILE
"""
import os
import resource
import socket
import subprocess
import sys

path, chunk = sys.argv[1], 1 << 20
size = os.path.getsize(path)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
port = srv.getsockname()[1]
reader = subprocess.Popen([sys.executable, "-c", f"""
import socket
s = socket.create_connection(("127.0.0.1", {port}))
buf = bytearray(1 << 20)
while s.recv_into(buf):
    pass
"""])
conn, _ = srv.accept()
with open(path, "rb") as f:
    before = resource.getrusage(resource.RUSAGE_SELF)
    offset = 0
    while offset < size:
        offset += os.sendfile(conn.fileno(), f.fileno(), offset, chunk)
    after = resource.getrusage(resource.RUSAGE_SELF)
conn.close()
reader.wait()
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(f"{cpu / (size / 1e9):.3f}")
