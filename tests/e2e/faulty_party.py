"""A party daemon with one fault injected into key generation, for the e2e fault tests (issue 14).

Run as `python -m tests.e2e.faulty_party party run --config ...`; ZRKEYRING_FAULT selects the fault:

- `exit-before-pending`: the process dies (os._exit, as SIGKILL would leave it) after the last keygen
  round, before its share is stored;
- `exit-before-commit`: it dies after every confirmation arrived, before committing its pending share;
- `exit-after-refresh-pending`: it dies right after a refresh stored its new share pending, before the
  second version sync (the moment the catch-up test needs, without racing a log line);
- `readonly-store`: while the file ZRKEYRING_FAULT_FLAG exists, storing a share fails as SQLite does
  on a read-only database (the tests run as root, for whom chmod does not make a file read-only, so
  this one fault is injected at the store's write).

Everything else is the shipped daemon.
"""

from __future__ import annotations

import os
import sqlite3
import sys

from appliance.cli.main import main
from appliance.hsm import store
from appliance.mpc_party import finality, lifecycle

FAULT = os.environ.get("ZRKEYRING_FAULT", "")


def _exit_before(name: str) -> None:
    def die(*_args, **_kwargs):
        sys.stderr.write(f"faulty party: dying before {name}\n")
        sys.stderr.flush()
        os._exit(137)

    setattr(finality.KeygenFinality, name, die)


def _exit_after_refresh_pending() -> None:
    honest = lifecycle.Refresher._reshare

    def reshare(self, *args, **kwargs):
        record = honest(self, *args, **kwargs)
        if record is not None:
            sys.stderr.write("faulty party: dying after storing a refresh pending\n")
            sys.stderr.flush()
            os._exit(137)
        return record

    lifecycle.Refresher._reshare = reshare


def _readonly_store() -> None:
    honest = store.ShareStore.put_pending
    flag = os.environ["ZRKEYRING_FAULT_FLAG"]

    def put_pending(self, meta, sealed):
        if os.path.exists(flag):
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return honest(self, meta, sealed)

    store.ShareStore.put_pending = put_pending


if __name__ == "__main__":
    {"exit-before-pending": lambda: _exit_before("_put_pending"),
     "exit-before-commit": lambda: _exit_before("_commit"),
     "exit-after-refresh-pending": _exit_after_refresh_pending,
     "readonly-store": _readonly_store}[FAULT]()
    sys.exit(main(sys.argv[1:]))
