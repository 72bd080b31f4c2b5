"""The ``lmdb`` format: per split an LMDB environment in the folder ``<split>/``
(``data.mdb``, no lock file), keys = the record keys (UTF-8), values as
``formats.encoding`` documents. Open it with ``lmdb.open(path, readonly=True, lock=False)``.
"""
from __future__ import annotations

from typing import Any

import lmdb

from modelyard.datasets.formats.base import SplitWriter, format_error
from modelyard.datasets.formats.encoding import encode
from modelyard.datasets.records import Record

_MAP_SIZE = 1 << 40  # an address-space reservation, not disk: the file grows as written
_TXN_RECORDS = 1000


class LmdbWriter(SplitWriter):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # lock=False: no lock.mdb next to the data, and a single writer needs none
        self.env = lmdb.open(str(self.folder), map_size=_MAP_SIZE, lock=False, sync=False, meminit=True)
        self.txn = self.env.begin(write=True)
        self.pending = 0

    def write(self, record: Record) -> None:
        key = record.key.encode()
        if len(key) > self.env.max_key_size():
            raise format_error(f"LMDB keys are at most {self.env.max_key_size()} bytes; {record.key[:60]}... is {len(key)}")
        if not self.txn.put(key, encode(record, self.ctx.coder), overwrite=False):
            raise format_error(f"record key {record.key!r} occurs twice")
        self.pending += 1
        if self.pending >= _TXN_RECORDS:
            self.txn.commit()
            self.txn, self.pending = self.env.begin(write=True), 0

    def close(self) -> None:
        self.txn.commit()
        self.env.sync(True)
        self.env.close()

    def abort(self) -> None:
        self.txn.abort()
        self.env.close()
