"""Test-session setup: the Triton kernels run under the interpreter on CPU tensors."""

import os

# Must happen before anything imports triton (this file is imported first by pytest).
os.environ.setdefault("TRITON_INTERPRET", "1")
