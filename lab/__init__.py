"""The lab: real Debian kernels with full debug info, booted under QEMU (TCG)."""
