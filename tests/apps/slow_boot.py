"""The test app, slow to import: a worker that has not yet sent its first
heartbeat to the master for SLOW_BOOT_SECONDS (default 4) after its fork."""
import os
import time

time.sleep(float(os.environ.get("SLOW_BOOT_SECONDS", "4")))

from app import app  # noqa: E402,F401
