"""Errors raised by the HSM layer.

Every error an operator can cause (bad module path, unknown token label, wrong PIN, a token without a
needed mechanism) is a `UserError`, so the CLI prints it as one line. A blob that fails to unseal is a
`SealError`: it means tampering, corruption or the wrong AAD, and never yields plaintext.
"""

from __future__ import annotations

from appliance.runtime.errors import UserError


class HsmError(UserError):
    """Base class of every error the HSM layer raises on purpose."""


class ModuleLoadError(HsmError):
    """The configured PKCS#11 module is missing or is not a PKCS#11 library."""


class TokenNotFoundError(HsmError):
    """No token carries the configured label."""


class PinIncorrectError(HsmError):
    """The token rejected the user PIN."""


class PinLockedError(HsmError):
    """The token's user PIN is locked after too many wrong attempts."""


class MechanismMissingError(HsmError):
    """The token lacks a mechanism this layer needs."""


class KeyMissingError(HsmError):
    """A key this layer needs is not on the token (run `zrkeyring hsm init`)."""


class SealError(HsmError):
    """A sealed blob cannot be opened: malformed, tampered with, or sealed under another AAD or key."""


class BlobFormatError(SealError):
    """A sealed blob is structurally invalid (wrong length, unknown version, another key id)."""


class BlobAuthError(SealError):
    """AES-GCM authentication failed: the blob was altered or the AAD does not match."""
