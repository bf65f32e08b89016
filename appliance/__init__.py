"""zrkeyring appliance: the HSM layer, the MPC party daemon and the chain controller."""

from typing import Any


def __getattr__(name: str) -> Any:
    """`appliance.__version__`, read lazily from the one version source (appliance/runtime/version.py:
    pyproject.toml's [project] version), so importing a protocol module reads no file."""
    if name == "__version__":
        from appliance.runtime.version import version

        return version()
    raise AttributeError(f"module 'appliance' has no attribute {name!r}")
