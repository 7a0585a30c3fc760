"""The daemon's life: group commit, SIGTERM flush, SIGHUP reload, sequence
gaps across restarts, SUB mode with topics and several publishers."""
import json
import signal
import time

import zmq

from conftest import event, free_port, run_voca, wait_for


def test_group_commit_then_sigterm_flushes(agent_factory):
    # Batches that never fill and wait 10 s: only SIGTERM can commit them.
    a = agent_factory(store_extra="  batch_max: 1000000\n", batch_ms="10s").start()
    for i in range(300):
        a.send_event(event(f"t{i}"))
    time.sleep(0.5)
    assert a.scalar("SELECT count(*) FROM events") == 0, "committed before the batch was due"
    a.stop()  # SIGTERM: must commit and exit 0
    assert a.scalar("SELECT count(*) FROM events") == 300
    assert "committing and stopping" in a.log_text()
    assert "stopped cleanly" in a.log_text()


def test_batches_commit_within_batch_ms(agent):
    start = time.monotonic()
    agent.send_event(event("fast"))
    agent.wait_event("fast", timeout=5)
    assert time.monotonic() - start < 1.0


def xpub(endpoint):
    s = zmq.Context.instance().socket(zmq.XPUB)
    s.setsockopt(zmq.XPUB_NODROP, 1)
    s.setsockopt(zmq.LINGER, 2000)
    s.bind(endpoint)
    return s


def wait_subscription(sock, timeout=10):
    assert sock.poll(timeout * 1000), "no subscription arrived"
    return sock.recv()


def test_sub_mode_topics_and_several_publishers(agent_factory):
    eps = [f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"]
    p1, p2 = xpub(eps[0]), xpub(eps[1])
    a = agent_factory(mode="sub", endpoints=eps, topics=["feedback.eu"]).start()
    assert wait_subscription(p1) == b"\x01feedback.eu"
    assert wait_subscription(p2) == b"\x01feedback.eu"
    p1.send_multipart([b"feedback.eu.shard1", json.dumps(event("from-p1")).encode()])
    p2.send_multipart([b"feedback.eu", json.dumps([event("from-p2a"), event("from-p2b")]).encode()])
    p2.send_multipart([b"feedback.us", json.dumps(event("filtered-out")).encode()])
    p1.send_multipart([b"feedback.eu", json.dumps(event("after")).encode()])
    a.wait_event("after")
    a.wait_event("from-p2b")
    assert a.has_event("from-p1") and a.has_event("from-p2a")
    assert not a.has_event("filtered-out")
    # The topic is kept with quarantined messages, to find the sender.
    p1.send_multipart([b"feedback.eu.bad", b"{oops"])
    wait_for(lambda: a.scalar("SELECT topic FROM quarantine") == "feedback.eu.bad")
    a.stop()
    p1.close()
    p2.close()


def test_sighup_reloads_topics_and_keeps_old_config_when_bad(agent_factory):
    ep = f"tcp://127.0.0.1:{free_port()}"
    pub = xpub(ep)
    a = agent_factory(mode="sub", endpoints=[ep], topics=["a"]).start()
    assert wait_subscription(pub) == b"\x01a"
    pub.send_multipart([b"b", json.dumps(event("b-before")).encode()])
    pub.send_multipart([b"a", json.dumps(event("a-1")).encode()])
    a.wait_event("a-1")
    assert not a.has_event("b-before")

    a.write_config(topics=["b"])
    a.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in a.log_text(), what="reload")
    # Subscribes to b before it drops a.
    assert wait_subscription(pub) == b"\x01b"
    assert wait_subscription(pub) == b"\x00a"
    pub.send_multipart([b"a", json.dumps(event("a-after")).encode()])
    pub.send_multipart([b"b", json.dumps(event("b-after")).encode()])
    a.wait_event("b-after")
    assert not a.has_event("a-after")

    a.config.write_text("ingest:\n  mode: sideways\n")
    a.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed, keeping the running configuration" in a.log_text())
    assert "voca.yaml:2: ingest.mode: expected one of sub, pull, got 'sideways'" in a.log_text()
    pub.send_multipart([b"b", json.dumps(event("b-still")).encode()])
    a.wait_event("b-still")
    assert a.alive()
    a.stop()
    pub.close()


def test_sequence_gaps_are_logged_counted_and_survive_restart(agent_factory):
    a = agent_factory().start()
    for seq in [0, 1, 2, 5, 6]:
        a.send_event(event(f"s{seq}", publisher="job-7", seq=seq))
    a.wait_event("s6")
    a.stop()
    assert a.query("SELECT publisher, expected_seq, got_seq, missing FROM gaps") == [
        ("job-7", 3, 5, 2)]
    assert a.log_text().count("publisher job-7 skipped seq 3..4 (2 events lost") == 1
    # After a restart the position is remembered: 7, 8 lost while it was down.
    a.start()
    a.send_event(event("s9", publisher="job-7", seq=9))
    a.wait_event("s9")
    a.stop()
    assert a.query("SELECT expected_seq, missing FROM gaps ORDER BY id") == [(3, 2), (7, 2)]
    assert a.counter("gaps") == 2 and a.counter("gap_missing") == 4
    stats = json.loads(run_voca("stats", "-c", str(a.config), "--json").stdout)
    assert stats["publishers"][0]["publisher"] == "job-7"
    assert stats["publishers"][0]["missing"] == 4


def test_publish_over_pub_loses_nothing_with_a_tiny_receive_queue(agent_factory, tmp_path):
    ep = f"tcp://127.0.0.1:{free_port()}"
    a = agent_factory(mode="sub", endpoints=[ep], ingest_extra="  rcvhwm: 10\n").start()
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(event(f"n{i}", publisher="p", seq=i)) + "\n"
                            for i in range(20000)))
    r = run_voca("publish", "--endpoint", ep, str(feed), "--timeout", "20")
    assert r.returncode == 0, r.stderr
    assert "sent 20000 events in 20000 messages" in r.stdout
    wait_for(lambda: a.has_event("n19999"), timeout=30)
    a.stop()
    assert a.scalar("SELECT count(*) FROM events") == 20000
    assert a.counter("gaps") == 0


def test_bad_config_at_start_exits_with_file_line_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("ingest:\n  mode: sub\nstore:\n  batch_max: many\n")
    r = run_voca("run", "-c", str(cfg), timeout=10)
    assert r.returncode == 1
    assert f"{cfg}:4: store.batch_max: expected an integer" in r.stderr


def test_bind_conflict_is_a_clear_error(agent_factory):
    a = agent_factory().start()
    b = agent_factory(endpoints=[a.endpoint])
    r = run_voca("run", "-c", str(b.config), timeout=10)
    assert r.returncode == 1
    assert f"cannot bind {a.endpoint}: Address already in use" in r.stderr
