"""Hot swap: a background thread follows the registry's Watch stream and applies every event to
the store. The watch starts from the beginning of the event log, so deletions that happened while
the replica was down also clean its disk tier; the client's cursor makes reconnects (a registry
restart) resume exactly after the last applied event.
"""

from __future__ import annotations

import logging
import threading
import time

from proto import registry_pb2
from serving.concepts.observer import CacheObserver
from serving.concepts.store import ConceptStore
from shared.errors import CdserveError
from shared.registry_client import ConceptWatch, RegistryClient

log = logging.getLogger("cdserve.serving")
Kind = registry_pb2.ConceptEvent


class RegistryWatcher:
    def __init__(
        self, client: RegistryClient, store: ConceptStore, observer: CacheObserver, *, heartbeat_s: int = 0
    ) -> None:
        self._client = client
        self._store = store
        self._observer = observer
        self._heartbeat_s = heartbeat_s
        self._watch: ConceptWatch | None = None
        self._thread = threading.Thread(target=self._run, name="cdserve-registry-watch", daemon=True)
        self.applied = 0

    @property
    def sequence(self) -> int:
        """The cursor: the last event sequence applied (0 before the first)."""
        return self._watch.sequence if self._watch else 0

    def start(self) -> RegistryWatcher:
        self._watch = self._client.watch(0, heartbeat_s=self._heartbeat_s)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        assert self._watch is not None
        try:
            for event in self._watch:
                self._apply(event)
        except CdserveError as e:  # e.g. the replica's token was revoked: nothing retrying can fix
            log.error("registry watch ended: %s", e.message)

    def _apply(self, event: registry_pb2.ConceptEvent) -> None:
        if event.kind not in (Kind.PUBLISHED, Kind.DELETED):
            return
        concept = event.concept
        self._store.apply_event(event.kind == Kind.PUBLISHED, concept.concept_id, int(concept.version))
        self.applied += 1
        if event.time_ms:
            self._observer.watch_lag(max(0.0, time.time() - event.time_ms / 1000.0))
