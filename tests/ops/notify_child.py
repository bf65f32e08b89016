"""A miniature daemon for the sd_notify tests: the lifecycle the real daemons follow, nothing else.

argv[1] = "native" (systemd-python when importable) or "direct" (the AF_UNIX writer); or "wait-socket
PATH": the daemons' own `serve_until_signalled`, ready only once a unix socket exists at PATH (the
controller's party-socket check), so the test can hold readiness back and then give it.
"""

import logging
import sys

from appliance.runtime.daemon_life import serve_until_signalled
from appliance.runtime.readiness import socket_reasons
from appliance.runtime.systemd import Notifier, stop_on_signals


def main() -> int:
    if sys.argv[1] == "wait-socket":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        serve_until_signalled("serving", lambda: None, readiness=lambda: socket_reasons(sys.argv[2]),
                              retry_s=0.1, tick_s=0.1, recheck_s=0.2)
        return 0
    notifier = Notifier(prefer_systemd_python=sys.argv[1] == "native")
    stop = stop_on_signals()
    notifier.status("checking config")
    notifier.ready("serving")
    while not stop.wait(timeout=notifier.loop_timeout(0.5)):
        notifier.watchdog()
    notifier.stopping("stopping on signal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
