"""Error types shared across the appliance."""


class UserError(Exception):
    """An error the operator can fix (bad config, wrong PIN, missing token).

    The CLI prints these as one line without a traceback; the message must say what is wrong and,
    where it can, which config field, file or device is at fault.
    """


class ConfigError(UserError):
    """A configuration file is missing, unreadable, or has a missing or mistyped field."""
