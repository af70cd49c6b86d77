"""Imported by preflight tests: prints to stdout (Python and file-descriptor level) at import."""

import os
import sys

print("noise from noisy_mod")
sys.stdout.flush()
os.write(1, b"fd-level noise from noisy_mod\n")
