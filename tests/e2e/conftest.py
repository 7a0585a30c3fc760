"""Fixtures for end-to-end tests: the real voca binary on loopback.

An Agent writes a config into a temporary directory, starts `voca run`,
and offers helpers to send frames over real ZeroMQ sockets and to read the
real SQLite file. stop() sends SIGTERM and requires a clean exit: under
`make sanitize` a leak or UB report makes that exit non-zero, so it fails.
"""
import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import time

import pytest
import zmq

ROOT = pathlib.Path(__file__).resolve().parents[2]
VOCA = os.environ.get("VOCA_BIN") or str(ROOT / "build" / "voca")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event(event_id, **fields):
    """A valid scored-feedback event; keyword arguments override fields."""
    e = {
        "event_id": event_id,
        "ts": "2026-03-01T10:00:00Z",
        "category": "shipping",
        "sentiment": {"label": "negative", "score": -0.6},
        "sku": "SKU-1",
        "confidence": 0.9,
    }
    e.update(fields)
    return e


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Agent:
    def __init__(self, tmp_path, mode="pull", endpoints=None, topics=None, extra="",
                 ingest_extra="", store_extra="", batch_ms="5ms"):
        self.dir = tmp_path
        self.mode = mode
        self.endpoints = endpoints or [f"tcp://127.0.0.1:{free_port()}"]
        self.endpoint = self.endpoints[0]
        self.db = tmp_path / "voca.db"
        self.config = tmp_path / "voca.yaml"
        self.log = tmp_path / "voca.log"
        self.proc = None
        self.ingest_extra = ingest_extra
        self.store_extra = store_extra
        self.batch_ms = batch_ms
        self.write_config(topics=topics, extra=extra)
        self.ctx = zmq.Context.instance()
        self.push = None

    def write_config(self, topics=None, extra="", mode=None):
        eps = "".join(f"\n    - {e}" for e in self.endpoints)
        tops = "".join(f"\n    - \"{t}\"" for t in (topics or []))
        self.config.write_text(
            f"ingest:\n  mode: {mode or self.mode}\n  endpoints:{eps}\n"
            + (f"  topics:{tops}\n" if topics else "")
            + self.ingest_extra
            + f"store:\n  path: {self.db}\n  batch_ms: {self.batch_ms}\n"
            + self.store_extra
            + "log:\n  level: debug\n"
            + extra
        )

    def start(self):
        # A restart appends to the same log: wait for one more "running".
        runs = self.log.read_bytes().count(b"running (store schema") if self.log.exists() else 0
        self.logfile = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [VOCA, "run", "-c", str(self.config)],
            stdout=self.logfile, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_for(lambda: self.log.read_bytes().count(b"running (store schema") > runs
                 or self.proc.poll() is not None, what="voca to start")
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.push is not None:
            self.push.close(linger=0)
            self.push = None
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        finally:
            self.logfile.close()
        self.proc = None
        assert code == 0, f"voca exited {code}:\n{self.log.read_text()[-4000:]}"

    def log_text(self):
        return self.log.read_text(errors="replace")

    # -- sending (pull mode) --
    def send(self, *frames):
        """Sends one message of raw frames (bytes or str) to the PULL socket."""
        if self.push is None:
            self.push = self.ctx.socket(zmq.PUSH)
            self.push.setsockopt(zmq.LINGER, 5000)
            self.push.connect(self.endpoint)
        self.push.send_multipart([f.encode() if isinstance(f, str) else f for f in frames])

    def send_event(self, ev, topic=None):
        data = json.dumps(ev)
        self.send(*((topic, data) if topic else (data,)))

    # -- reading the store (db: the rules' state file, voca.rules.db) --
    def query(self, sql, *args, db=None):
        path = db or self.db
        if not path.exists():
            return []
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def scalar(self, sql, *args, db=None):
        rows = self.query(sql, *args, db=db)
        return rows[0][0] if rows else None

    @property
    def rules_db(self):
        return self.db.with_name("voca.rules.db")

    def counter(self, name):
        return self.scalar("SELECT value FROM counters WHERE name = ?", name)

    def has_event(self, event_id):
        return self.scalar("SELECT count(*) FROM events WHERE event_id = ?", event_id) == 1

    def wait_event(self, event_id, timeout=10.0):
        wait_for(lambda: self.has_event(event_id), timeout, f"event {event_id} stored")


@pytest.fixture
def agent_factory(tmp_path):
    agents = []

    def make(**kw):
        sub = tmp_path / f"agent{len(agents)}"
        sub.mkdir()
        a = Agent(sub, **kw)
        agents.append(a)
        return a

    yield make
    for a in agents:
        if a.proc is not None and a.proc.poll() is None:
            a.stop()


@pytest.fixture
def agent(agent_factory):
    return agent_factory().start()


def run_voca(*args, cwd=None, timeout=60, input=None):
    return subprocess.run([VOCA, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, input=input)
