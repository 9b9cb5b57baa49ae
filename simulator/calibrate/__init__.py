"""Micro-benchmarks that measure kernels on the machine at hand and write them into a hardware profile."""

from simulator.calibrate.fit import merge_measurements, write_profile_atomic

__all__ = ["merge_measurements", "write_profile_atomic"]
