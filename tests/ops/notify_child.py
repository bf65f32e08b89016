"""A miniature daemon for the sd_notify tests: the lifecycle the real daemons follow, nothing else.

argv[1] = "native" (systemd-python when importable) or "direct" (the AF_UNIX writer).
"""

import sys

from appliance.runtime.systemd import Notifier, stop_on_signals


def main() -> int:
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
