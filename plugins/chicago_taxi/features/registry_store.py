"""Feast's file registry, written atomically.

Feast's FileRegistryStore rewrites registry.db in place (open "wb", write). Two materializations
finishing together (the hourly and half-hourly DAGs, or a backfill's parallel runs) interleave
those writes and leave a file that no longer parses ("Error parsing message"), and a reader in
the middle of a write sees a truncated file. This store writes a temporary file next to the
registry and renames it over the old one, so readers see the old or the new registry, never a
mix. Writers are serialized by `chicago_taxi.features.registry_lock` (an flock), so one's update
of the materialization intervals is not lost to another's.

feature_repo/feature_store.yaml selects it with `registry_store_type`.
"""

from __future__ import annotations

import os
import uuid

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.utils import _utc_now


class AtomicFileRegistryStore(FileRegistryStore):
    def _write_registry(self, registry_proto: RegistryProto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._filepath.with_name(f".{self._filepath.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, mode="wb", buffering=0) as f:
                f.write(registry_proto.SerializeToString())
                os.fsync(f.fileno())
            os.replace(tmp, self._filepath)
        finally:
            tmp.unlink(missing_ok=True)
