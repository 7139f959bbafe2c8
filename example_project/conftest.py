"""Puts this directory on sys.path so tests can ``import recsys`` from anywhere."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
