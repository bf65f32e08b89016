"""The HSM layer: the only code in zrkeyring that speaks PKCS#11.

Use `Hsm.open(load_hsm_config(path))`; see docs/hsm.md for keys, blob and AAD formats and the
one-worker-thread rule.
"""

from appliance.hsm.config import HsmConfig, load_hsm_config, read_pin
from appliance.hsm.errors import (
    BlobAuthError,
    BlobFormatError,
    HsmError,
    KeyMissingError,
    MechanismMissingError,
    ModuleLoadError,
    PinIncorrectError,
    PinLockedError,
    SealError,
    TokenNotFoundError,
)
from appliance.hsm.facade import Hsm, HsmStatus, open_hsm

__all__ = [
    "open_hsm",
    "BlobAuthError",
    "BlobFormatError",
    "Hsm",
    "HsmConfig",
    "HsmError",
    "HsmStatus",
    "KeyMissingError",
    "MechanismMissingError",
    "ModuleLoadError",
    "PinIncorrectError",
    "PinLockedError",
    "SealError",
    "TokenNotFoundError",
    "load_hsm_config",
    "read_pin",
]
