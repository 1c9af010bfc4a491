"""An app that gives up while it boots: importing it ends the worker with
sys.exit(BGW_BOOT_EXIT) (default 3, which Gunicorn reads as "Worker failed
to boot" and halts the master on)."""
import os
import sys

sys.exit(int(os.environ.get("BGW_BOOT_EXIT", "3")))


def app(environ, start_response):  # never reached
    start_response("200 OK", [])
    return [b""]
