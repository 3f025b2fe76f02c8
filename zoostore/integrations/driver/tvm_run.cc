// tvm_run: run a TVM-compiled model library (deploy_lib.so) once through the Relax VM.
//
// A minimal C++ "deployment" driver, the smallest program that proves a compiled artifact
// runs where it is meant to: zoostore's tests cross-compile it for aarch64 and run it under
// qemu-user against the aarch64 libtvm_runtime.so / libtvm_ffi.so shipped in the
// apache-tvm / apache-tvm-ffi manylinux aarch64 wheels.
//
// Usage: tvm_run LIB OUT_PREFIX INPUT...
//   INPUT      PATH:DTYPE:SHAPE, e.g. x.bin:float32:1x16 (SHAPE empty for a scalar);
//              PATH holds the raw little-endian bytes of the tensor in C order.
//   OUT_PREFIX each output i is written raw to OUT_PREFIX<i>.bin, and a line
//              "output <i> <dtype> <d0xd1x...>" is printed on stdout.
// Exit status: 0 ok, 1 runtime error (message on stderr), 2 usage.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;
using ffi::Tensor;

namespace {

// Values of tvm::runtime::memory::AllocatorType (kNaive = 1, kPooled = 2).
constexpr int kPooledAllocator = 2;

// Host memory for input tensors; the headers of tvm_ffi alone suffice (the wheels' copy of
// <tvm/runtime/tensor.h> includes headers that the wheels do not ship).
struct CPUAlloc {
  void AllocData(DLTensor* t) {
    t->data = std::aligned_alloc(64, (ffi::GetDataSize(*t) + 63) / 64 * 64 + 64);
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

const char* DataPtr(const DLTensor* t) { return static_cast<const char*>(t->data) + t->byte_offset; }

Tensor LoadInput(const std::string& spec, DLDevice dev) {
  size_t a = spec.find(':');
  size_t b = spec.find(':', a == std::string::npos ? a : a + 1);
  if (a == std::string::npos || b == std::string::npos) {
    throw std::runtime_error("input spec must be PATH:DTYPE:SHAPE, got " + spec);
  }
  std::string path = spec.substr(0, a);
  DLDataType dtype = ffi::StringToDLDataType(spec.substr(a + 1, b - a - 1));
  std::vector<int64_t> shape;
  std::stringstream dims(spec.substr(b + 1));
  for (std::string d; std::getline(dims, d, 'x');) {
    if (!d.empty()) shape.push_back(std::stoll(d));
  }
  Tensor t = Tensor::FromNDAlloc(CPUAlloc(), ffi::ShapeView(shape.data(), shape.size()), dtype, dev);
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t want = ffi::GetDataSize(*t.GetDLTensorPtr());
  if (!in.good() && !in.eof()) throw std::runtime_error("cannot read " + path);
  if (bytes.size() != want) {
    throw std::runtime_error(path + " holds " + std::to_string(bytes.size()) +
                             " bytes, the tensor needs " + std::to_string(want));
  }
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

void WriteOutput(const Tensor& t, size_t index, const std::string& prefix) {
  const DLTensor* dl = t.GetDLTensorPtr();
  if (dl->device.device_type != kDLCPU) throw std::runtime_error("output not on the CPU");
  std::string path = prefix + std::to_string(index) + ".bin";
  std::ofstream out(path, std::ios::binary);
  out.write(DataPtr(dl), static_cast<std::streamsize>(ffi::GetDataSize(*dl)));
  if (!out) throw std::runtime_error("cannot write " + path);
  std::cout << "output " << index << " " << ffi::DLDataTypeToString(dl->dtype) << " ";
  for (int i = 0; i < dl->ndim; ++i) std::cout << (i ? "x" : "") << dl->shape[i];
  std::cout << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: tvm_run LIB OUT_PREFIX [PATH:DTYPE:SHAPE]...\n";
    return 2;
  }
  try {
    DLDevice cpu{kDLCPU, 0};
    ffi::Module lib = ffi::Module::LoadFromFile(argv[1]);
    ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
    ffi::Function main_fn = vm->GetFunction("main").value();

    std::vector<Tensor> inputs;
    for (int i = 3; i < argc; ++i) inputs.push_back(LoadInput(argv[i], cpu));
    std::vector<ffi::AnyView> args(inputs.begin(), inputs.end());
    ffi::Any result;
    main_fn.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);

    if (auto tensor = result.try_cast<Tensor>()) {
      WriteOutput(*tensor, 0, argv[2]);
    } else {
      auto outputs = result.cast<ffi::Array<ffi::Any>>();
      for (size_t i = 0; i < outputs.size(); ++i) {
        WriteOutput(outputs[i].cast<Tensor>(), i, argv[2]);
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "tvm_run: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
