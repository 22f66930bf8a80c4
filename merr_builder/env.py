"""Process environment for offline, quiet runs; applied by the CLI and the flows before Prefect loads."""

from __future__ import annotations

import os

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",  # no model is ever fetched at run time (DESIGN §4)
    "TRANSFORMERS_OFFLINE": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # telemetry fails offline and logs at ERROR
    "PREFECT_LOGGING_LEVEL": "WARNING",  # one log line per task run drowns the progress display
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",  # stage outputs are our own files under OUT/stages
}


def apply_offline_defaults() -> None:
    """Set each default unless the user set the variable already."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
