// zoo_infer: one inference of the model zoostore synced, configured by its generated header.
//
// The header (<model>_config.hpp, written by `zoostore build`) gives the model's version, its
// input and output nodes, shapes and data types. The program checks the version against the ones
// it supports (error on known unsupported ones, warning on unknown ones), fills each input with
// the deterministic values in[i] = ((i % 13) - 6) / 4, runs deploy_lib.so through the Relax VM
// and prints each output as "output <i> <name> <dtype> <d0xd1...>: v0 v1 ...".
//
// Usage: zoo_infer [MODEL_DIR]   (default: the directory zoostore_model_dir() gave at configure)
#include ZOO_CONFIG_HEADER

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <cstdint>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;
namespace model = ZOO_MODEL_NAMESPACE;
using ffi::Tensor;

namespace {

// The model versions this program is written for (MAJOR.MINOR), and the ones it knows it cannot use.
constexpr zoostore::ModelVersion kSupported[] = {{1, 0, 0}};
constexpr zoostore::ModelVersion kUnsupported[] = {{0, 9, 0}};

constexpr int kPooledAllocator = 2;  // tvm::runtime::memory::AllocatorType::kPooled

struct CPUAlloc {
  void AllocData(DLTensor* t) {
    t->data = std::aligned_alloc(64, (ffi::GetDataSize(*t) + 63) / 64 * 64 + 64);
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

Tensor MakeInput(const zoostore::TensorConfig& node, DLDevice dev) {
  std::vector<int64_t> shape(node.shape, node.shape + node.ndim);
  for (int64_t& d : shape) {
    if (d < 0) d = 1;  // a dynamic dimension: run with size 1
  }
  DLDataType dtype{node.dtype_code, node.dtype_bits, node.dtype_lanes};
  Tensor t = Tensor::FromNDAlloc(CPUAlloc(), ffi::ShapeView(shape.data(), shape.size()), dtype, dev);
  if (node.dtype_code != kDLFloat || node.dtype_bits != 32) {
    throw std::runtime_error(std::string("this demo fills float32 inputs only; ") + node.name + " is " + node.dtype);
  }
  auto* data = static_cast<float*>(t.data_ptr());
  size_t n = ffi::GetDataSize(*t.GetDLTensorPtr()) / sizeof(float);
  for (size_t i = 0; i < n; ++i) data[i] = static_cast<float>(static_cast<int>(i % 13) - 6) / 4.0f;
  return t;
}

void PrintOutput(const Tensor& t, size_t index) {
  const DLTensor* dl = t.GetDLTensorPtr();
  std::cout << "output " << index << " "
            << (index < model::num_outputs ? model::network_outputs[index].name : "?") << " "
            << ffi::DLDataTypeToString(dl->dtype) << " ";
  for (int i = 0; i < dl->ndim; ++i) std::cout << (i ? "x" : "") << dl->shape[i];
  std::cout << ":";
  if (dl->dtype.code == kDLFloat && dl->dtype.bits == 32) {
    const float* v = reinterpret_cast<const float*>(static_cast<const char*>(dl->data) + dl->byte_offset);
    size_t n = ffi::GetDataSize(*dl) / sizeof(float);
    for (size_t i = 0; i < n; ++i) std::cout << " " << std::setprecision(9) << v[i];
  }
  std::cout << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ZOO_MODEL_DIR;
  std::cout << "model " << model::network_name << " " << (model::has_version ? model::version : "(no version)")
            << " for " << model::arch << ", tvm " << model::tvm_version << "\n";
  switch (zoostore::check_version(model::modelzoo_version, kSupported, kUnsupported)) {
    case zoostore::VersionStatus::supported:
      break;
    case zoostore::VersionStatus::unsupported:
      std::cerr << "zoo_infer: model version " << model::version << " is not supported (want 1.0.x)\n";
      return 1;
    case zoostore::VersionStatus::unknown:
      std::cerr << "zoo_infer: warning: model version " << model::version << " is unknown to this program (written for 1.0.x)\n";
      break;
  }
  try {
    DLDevice cpu{kDLCPU, 0};
    ffi::Module lib = ffi::Module::LoadFromFile(dir + "/deploy_lib.so");
    ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
    ffi::Function main_fn = vm->GetFunction(model::entry_function).value();

    std::vector<Tensor> inputs;
    for (size_t i = 0; i < model::num_inputs; ++i) inputs.push_back(MakeInput(model::network_inputs[i], cpu));
    std::vector<ffi::AnyView> args(inputs.begin(), inputs.end());
    ffi::Any result;
    main_fn.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
    if (auto tensor = result.try_cast<Tensor>()) {
      PrintOutput(*tensor, 0);
    } else {
      auto outputs = result.cast<ffi::Array<ffi::Any>>();
      for (size_t i = 0; i < outputs.size(); ++i) PrintOutput(outputs[i].cast<Tensor>(), i);
    }
  } catch (const std::exception& e) {
    std::cerr << "zoo_infer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
