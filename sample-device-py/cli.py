#!/usr/bin/env python3
"""The Python sample device (docs/sample-device-py.md). Run it with the venv that python/requirements-sample-device-py.txt
describes: `"$(tools/python-env.sh python/requirements-sample-device-py.txt)/python" sample-device-py/cli.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sampledevice.cli import entry  # noqa: E402

if __name__ == "__main__":
    entry()
