"""The demo step runs on its own throwaway token, twice in one process, and leaves SOFTHSM2_CONF alone."""

from __future__ import annotations

import os

from appliance.local.demo_hsm import demo_step


def test_demo_step_twice_and_the_session_token_still_works(hsm, softhsm_dir):
    for _ in range(2):
        lines = demo_step()
        assert any("verified with coincurve" in line for line in lines)
        assert any("rejected" in line for line in lines)
        assert os.environ["SOFTHSM2_CONF"] == str(softhsm_dir)
    # the demo re-initialised the module under another directory; our token is found again
    assert hsm.unseal(hsm.seal(b"after demo", b"a"), b"a") == b"after demo"
