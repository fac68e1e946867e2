"""Watch: events arrive in order, a cursor resumes exactly after the last one seen, and the
client's watch survives a registry restart and stops promptly when closed from another thread."""

from __future__ import annotations

import threading
from queue import Queue

from proto import registry_pb2
from shared.registry_client import RegistryClient
from shared.rpc_client import RetryPolicy
from tests.registry.conftest import FAST_RETRY

PUBLISHED = registry_pb2.ConceptEvent.PUBLISHED
DELETED = registry_pb2.ConceptEvent.DELETED
HEARTBEAT = registry_pb2.ConceptEvent.HEARTBEAT


def consume_in_thread(watch) -> tuple[Queue, threading.Thread]:
    """Feed a watch's events into a queue from a background thread, as a replica does."""
    events: Queue = Queue()

    def run() -> None:
        for event in watch:
            events.put(event)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return events, thread


class ObservedRetry(RetryPolicy):
    """FAST_RETRY's schedule, and an event set once the watch has failed twice in a row: its stream
    broke, then a reconnect found nothing listening."""

    def __init__(self) -> None:
        super().__init__(
            FAST_RETRY.max_attempts, FAST_RETRY.initial_backoff_s, FAST_RETRY.max_backoff_s, FAST_RETRY.multiplier
        )
        object.__setattr__(self, "retrying", threading.Event())

    def delay_s(self, failures: int) -> float:
        if failures >= 2:
            self.retrying.set()
        return super().delay_s(failures)


def summary(event) -> tuple[int, str, int]:
    return event.kind, event.concept.concept_id, event.concept.version


def test_events_arrive_in_order_and_resume_after_a_cursor(server, acme, make_artifact):
    acme.publish(make_artifact("dog", seed=1))
    acme.publish(make_artifact("dog", seed=2))
    acme.delete("dog@1")
    acme.publish(make_artifact("cat"))

    with server.client("tok-acme") as client, client.watch() as watch:
        iterator = iter(watch)
        seen = [next(iterator) for _ in range(4)]
    assert [summary(e) for e in seen] == [
        (PUBLISHED, "dog", 1),
        (PUBLISHED, "dog", 2),
        (DELETED, "dog", 1),
        (PUBLISHED, "cat", 1),
    ]
    assert [e.sequence for e in seen] == sorted({e.sequence for e in seen})

    with server.client("tok-acme") as client, client.watch(after_sequence=seen[1].sequence) as watch:
        iterator = iter(watch)
        assert [summary(next(iterator)) for _ in range(2)] == [summary(e) for e in seen[2:]]


def test_live_events_and_heartbeats(server, acme, make_artifact):
    with server.client() as client:
        watch = client.watch(heartbeat_s=1, include_heartbeats=True)
        events, thread = consume_in_thread(watch)
        first = events.get(timeout=10)
        assert first.kind == HEARTBEAT and first.sequence == 0
        acme.publish(make_artifact("dog"), public=True)
        assert summary(events.get(timeout=10)) == (PUBLISHED, "dog", 1)
        watch.close()
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_watch_reconnects_across_a_restart_and_misses_nothing(server, make_artifact):
    retry = ObservedRetry()
    with server.client("tok-acme") as publisher, RegistryClient(server.target, token="tok-ops", retry=retry) as replica:
        publisher.publish(make_artifact("dog"))
        watch = replica.watch()
        events, thread = consume_in_thread(watch)
        assert summary(events.get(timeout=10)) == (PUBLISHED, "dog", 1)

        server.stop()
        assert retry.retrying.wait(timeout=10), "the watch did not try to reconnect to the stopped registry"
        server.restart()
        publisher.publish(make_artifact("cat"))
        publisher.delete("dog")

        assert [summary(events.get(timeout=10)) for _ in range(2)] == [(PUBLISHED, "cat", 1), (DELETED, "dog", 1)]
        assert watch.sequence == 3
        watch.close()
        thread.join(timeout=5)
        assert not thread.is_alive() and events.empty()


def test_watch_shows_only_what_the_caller_may_see(server, make_artifact):
    with server.client("tok-acme") as acme, server.client("tok-beta") as beta:
        acme.publish(make_artifact("secret"))
        acme.publish(make_artifact("shared"), public=True)
        with beta.watch() as watch:
            assert summary(next(iter(watch))) == (PUBLISHED, "shared", 1)
