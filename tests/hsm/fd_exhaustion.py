"""Run by test_session_loss in a subprocess: exhaust this process's descriptors under a live HSM
session, check the HSM reports unavailable, free them, and check it comes back by itself.

A subprocess because it lowers its own RLIMIT_NOFILE and holds every descriptor for a moment: doing
that in pytest's process would break the rest of the run. Prints a JSON summary on the last line.
"""

from __future__ import annotations

import json
import resource
import socket
import sys
import time

from appliance.hsm import Hsm, load_hsm_config

LIMIT = 256
RECOVER_WITHIN_S = 15.0


def exhaust() -> list[socket.socket]:
    """Hold every free descriptor (bounded by LIMIT), as a connection flood would."""
    hog = []
    try:
        while len(hog) < LIMIT:
            hog.append(socket.socket())
    except OSError:
        pass
    return hog


def main(config_path: str) -> int:
    hsm = Hsm.open(load_hsm_config(config_path))
    summary: dict = {"before": len(hsm.sign_identity(b"before")) == 64, "during": []}
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    hog = exhaust()
    for call in (lambda: hsm.sign_identity(b"during"), lambda: hsm.seal(b"x" * 32, b"aad")):
        try:
            call()
            summary["during"].append("ok")
        except Exception as exc:  # noqa: BLE001 - the summary records whatever it was
            summary["during"].append(type(exc).__name__)
    summary["ready_during"] = hsm.ready
    for s in hog:
        s.close()
    # No call from here on until ready: the link must reconnect by itself.
    deadline = time.monotonic() + RECOVER_WITHIN_S
    while not hsm.ready and time.monotonic() < deadline:
        time.sleep(0.05)
    summary["ready_after"] = hsm.ready
    summary["health"] = hsm.health()
    sealed = hsm.seal(b"y" * 32, b"aad")
    summary["after"] = len(hsm.sign_identity(b"after")) == 64 and hsm.unseal(sealed, b"aad") == b"y" * 32
    hsm.close()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
