"""Triton kernels (installed as kernelkit.kernels): @triton.jit code and launch configs only.

Imported lazily, when a CUDA tensor or use_backend("triton") needs them.
"""
