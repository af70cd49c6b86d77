"""Imported by probe tests: warns exactly like a free-threaded CPython that re-enables the GIL."""

import warnings

warnings.warn(
    "The global interpreter lock (GIL) has been enabled to load module 'gilwarn_mod', which has "
    "not declared that it can run safely without the GIL. To override this behavior and keep the "
    "GIL disabled (at your own risk), run with PYTHON_GIL=0 or -Xgil=0.",
    RuntimeWarning,
    stacklevel=1,
)

VALUE = 42
