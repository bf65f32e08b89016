"""Run by test_flood in a subprocess, as a compromised party: with its real HSM identity key and TLS
certificate, send one target party everything it may for one session (the whole byte budget, each
round's largest message) and then, for the rest of `seconds`, the largest envelopes the transport
carries from several threads (each refused by the gate). Bounded in count and time; loopback only.
Prints a JSON summary of the acks on the last line.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

from appliance.hsm import Hsm
from appliance.mpc_party.daemon import PartyConfig
from appliance.mpc_party.envelope import BROADCAST, Outbox
from appliance.mpc_party.limits import largest_payload, limits_for
from appliance.mpc_party.transport import PeerClient, PeerUnavailable, TlsCredentials
from appliance.rules.roster import Roster

THREADS = 4
MAX_SENDS = 4000  # per thread


def main(config_path: str, target: int, sid_hex: str, protocol: str, seconds: float) -> int:
    config = PartyConfig.load(config_path)
    hsm = Hsm.open(config.hsm)
    roster = Roster.load(config.party.roster)
    me = config.party.index
    tls = TlsCredentials.from_bundle(config.party.tls_dir, sealer=hsm)
    client = PeerClient.from_roster(roster, me, tls, timeout=2.0)
    outbox = Outbox(me, hsm.sign_identity)
    sid = bytes.fromhex(sid_hex)
    acks: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    limits, _known = limits_for(protocol, len(roster.parties))
    big = bytes(largest_payload(len(roster.parties)))
    # Pre-signed: the HSM is one worker thread, and the point is to load the target, not our HSM.
    allowed = [outbox.seal(sid, protocol, r, BROADCAST, bytes(size))
               for r, size in limits.rounds.items() for _ in range(limits.budget // size + 1)]
    junk = [outbox.seal(sid, protocol, 1 + i % max(limits.rounds), BROADCAST, big) for i in range(64)]

    def send(env) -> None:
        try:
            ack = client.send(target, env, retry_not_open=False)
            reason = "accepted" if ack.accepted else ack.reason
        except PeerUnavailable:
            reason = "unavailable"
        with lock:
            acks[reason] += 1

    def flood(worker: int) -> None:
        for i in range(MAX_SENDS):
            if time.monotonic() > deadline:
                return
            send(junk[(worker + i * THREADS) % len(junk)])

    threads = [threading.Thread(target=flood, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    print("knocking", flush=True)  # the caller opens the session only now (signing the above takes a while)
    # Meanwhile repeat the allowed set until the session is open and has taken it (session_not_open
    # before it opens; the session lasts well under a second, so the junk hits it from the start too).
    while time.monotonic() < deadline and acks["accepted"] == 0:
        for env in allowed:
            send(env)
    for t in threads:
        t.join()
    client.close()
    hsm.close()
    print(json.dumps(dict(acks)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])))
