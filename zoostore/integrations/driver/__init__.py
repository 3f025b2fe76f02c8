"""The minimal C++ driver (tvm_run.cc) that runs a compiled model library through the Relax VM:
build cross-compiles it to check aarch64 libraries under qemu (zoostore.integrations.qemu)."""
