// The cuBLAS products of the forward pass against a double-precision
// reference: out = x · Wᵀ with W row-major [out][in], in every dtype, with
// serving-dtype and fp32 outputs.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "cuda/gemm.h"
#include "tests/gpu/gpu_test_util.h"

namespace inferd {
namespace {

using cuda::Dtype;
using gpu_test::DeviceBuffer;
using gpu_test::Download;
using gpu_test::RoundAll;
using gpu_test::Upload;

class GemmTest : public ::testing::TestWithParam<Dtype> {};

TEST_P(GemmTest, LinearMatchesReference) {
  INFERD_REQUIRE_GPU();
  const Dtype dtype = GetParam();
  std::mt19937 rng(gpu_test::FreshSeed());
  cudaStream_t stream = nullptr;
  INFERD_ASSERT_CUDA(cudaStreamCreate(&stream));
  absl::StatusOr<std::unique_ptr<cuda::CublasGemm>> gemm = cuda::CublasGemm::Create(dtype, stream);
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  struct Shape {
    int rows, in, out;
  };
  for (const Shape& s : {Shape{1, 64, 172}, Shape{7, 172, 64}, Shape{64, 4096, 1024}, Shape{3, 512, 4097}}) {
    SCOPED_TRACE(::testing::Message() << s.rows << "x" << s.in << " -> " << s.out);
    const std::vector<float> x = RoundAll(dtype, gpu_test::RandomVector(size_t(s.rows) * s.in, rng));
    const std::vector<float> w = RoundAll(dtype, gpu_test::RandomVector(size_t(s.out) * s.in, rng, 0.05f));
    std::vector<float> want(size_t(s.rows) * s.out);
    for (int r = 0; r < s.rows; ++r) {
      for (int o = 0; o < s.out; ++o) {
        double acc = 0.0;
        for (int k = 0; k < s.in; ++k) acc += double{x[size_t(r) * s.in + k]} * w[size_t(o) * s.in + k];
        want[size_t(r) * s.out + o] = static_cast<float>(acc);
      }
    }
    DeviceBuffer d_x = Upload(dtype, x);
    DeviceBuffer d_w = Upload(dtype, w);
    for (const bool out_fp32 : {true, false}) {
      const Dtype out_type = out_fp32 ? Dtype::kFloat32 : dtype;
      DeviceBuffer d_out(want.size() * cuda::DtypeSize(out_type));
      const absl::Status status = (*gemm)->Linear(d_x.get(), s.rows, s.in, d_w.get(), s.out, d_out.get(), out_fp32);
      ASSERT_TRUE(status.ok()) << status;
      INFERD_ASSERT_CUDA(cudaStreamSynchronize(stream));
      // fp32 accumulation of exactly representable inputs: only the output's
      // rounding and the summation order differ from the reference.
      const double tolerance = out_fp32 ? 1e-5 : gpu_test::Tolerance(dtype);
      EXPECT_LE(gpu_test::RelativeError(Download(out_type, d_out.get(), want.size()), want), tolerance)
          << (out_fp32 ? "fp32 output" : "dtype output");
    }
  }
  gemm->reset();
  cudaStreamDestroy(stream);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GemmTest, ::testing::ValuesIn(gpu_test::AllDtypes()), gpu_test::DtypeParamName);

}  // namespace
}  // namespace inferd
