// --dtype's load-time conversion (engine/model/weight_conversion.h): values
// survive float32 -> type -> float32 within the type's rounding, norms stay
// float32 and exact, nothing of the source is kept alive, and bad requests
// fail naming what is wrong.
#include "engine/model/weight_conversion.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/cpu/kernels.h"
#include "engine/cpu/matmul.h"
#include "engine/model/dummy_weights.h"
#include "engine/model/model_loader.h"

namespace inferd {
namespace {

using ::testing::HasSubstr;

// dummy `tiny` with a hidden width that Q8_0 blocks divide (172 does not),
// and a separate classifier.
std::shared_ptr<const ModelWeights> F32Model(bool shared_classifier) {
  absl::StatusOr<ModelConfig> config = DummyPresetConfig("tiny");
  EXPECT_TRUE(config.ok()) << config.status();
  config->hidden_dim = 192;
  config->shared_classifier = shared_classifier;
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = MakeDummyWeights(*config, 3);
  EXPECT_TRUE(w.ok()) << w.status();
  return std::shared_ptr<const ModelWeights>(*std::move(w));
}

std::vector<float> Floats(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.rows * t.cols));
  for (int64_t r = 0; r < t.rows; ++r) cpu::PortableKernels()[t.type].to_float(t.row(r), &out[r * t.cols], t.cols);
  return out;
}

// The largest error a value may pick up: half an ulp of the type's
// mantissa (11 bits f16, 8 bits bf16), or for Q8_0 half a quantization step
// of the block (amax / 127) plus the rounding of that step to fp16 times the
// largest quant (127 * 2^-11 steps) — checked per block.
void ExpectClose(const Tensor& original, const Tensor& converted, WeightType type) {
  const std::vector<float> a = Floats(original), b = Floats(converted);
  ASSERT_EQ(a.size(), b.size());
  if (type == WeightType::kQ8_0) {
    for (size_t block = 0; block < a.size(); block += kQ8_0BlockSize) {
      float amax = 0;
      for (int i = 0; i < kQ8_0BlockSize; ++i) amax = std::max(amax, std::fabs(a[block + i]));
      const float step = amax / 127.0f;
      for (int i = 0; i < kQ8_0BlockSize; ++i) {
        ASSERT_LE(std::fabs(a[block + i] - b[block + i]), step * (0.5f + 127.0f / 2048.0f) + 1e-12f) << block + i;
      }
    }
    return;
  }
  const float rel = type == WeightType::kF16 ? 0x1.0p-11f : type == WeightType::kBF16 ? 0x1.0p-8f : 0.0f;
  for (size_t i = 0; i < a.size(); ++i) {
    // f16 keeps 11 bits down to 2^-14; below, its step is 2^-24.
    const float bound = std::fabs(a[i]) * rel + (type == WeightType::kF16 ? 0x1.0p-25f : 0.0f);
    ASSERT_LE(std::fabs(a[i] - b[i]), bound) << i << ": " << a[i] << " -> " << b[i];
  }
}

// Layer i's seven matrices in `a` beside the same ones in `b`.
std::vector<std::pair<const Tensor*, const Tensor*>> LayerMatrices(const ModelWeights& a, const ModelWeights& b,
                                                                   size_t i) {
  const LayerWeights& x = a.layers[i];
  const LayerWeights& y = b.layers[i];
  return {{&x.wq, &y.wq}, {&x.wk, &y.wk}, {&x.wv, &y.wv}, {&x.wo, &y.wo},
          {&x.w1, &y.w1}, {&x.w2, &y.w2}, {&x.w3, &y.w3}};
}

class ConversionTest : public ::testing::TestWithParam<WeightType> {};

TEST_P(ConversionTest, RoundTripStaysWithinTheTypesRounding) {
  const WeightType type = GetParam();
  std::shared_ptr<const ModelWeights> src = F32Model(/*shared_classifier=*/false);
  absl::StatusOr<ConvertedWeights> converted = ConvertWeights(src, type, /*num_threads=*/2);
  ASSERT_TRUE(converted.ok()) << converted.status();
  const ModelWeights& w = *converted->weights;
  EXPECT_EQ(w.dtype, type);
  if (type != WeightType::kF32) {
    EXPECT_THAT(converted->note, HasSubstr(std::string("float32 -> ") + std::string(WeightTypeName(type))));
  }
  ExpectClose(src->token_embedding, w.token_embedding, type);
  ExpectClose(src->wcls, w.wcls, type);
  EXPECT_EQ(w.wcls.type, type);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& a = src->layers[i];
    const LayerWeights& b = w.layers[i];
    for (auto [x, y] : LayerMatrices(*src, w, i)) {
      EXPECT_EQ(y->type, type);
      ExpectClose(*x, *y, type);
    }
    // Norms stay float32, value for value.
    EXPECT_EQ(b.rms_att.type, WeightType::kF32);
    EXPECT_EQ(Floats(a.rms_att), Floats(b.rms_att));
    EXPECT_EQ(Floats(a.rms_ffn), Floats(b.rms_ffn));
  }
  EXPECT_EQ(Floats(src->rms_final), Floats(w.rms_final));
}

TEST_P(ConversionTest, KeepsNothingOfTheSourceAndTiedClassifierStaysTied) {
  std::shared_ptr<const ModelWeights> src = F32Model(/*shared_classifier=*/true);
  const std::weak_ptr<const ModelWeights> watch = src;
  const std::weak_ptr<const void> storage = src->owners.front();
  absl::StatusOr<ConvertedWeights> converted = ConvertWeights(std::move(src), GetParam());
  ASSERT_TRUE(converted.ok()) << converted.status();
  if (GetParam() == WeightType::kF32) {
    // Already float32: the source itself, no copy.
    EXPECT_EQ(converted->weights, watch.lock());
    EXPECT_TRUE(converted->note.empty());
    return;
  }
  EXPECT_TRUE(watch.expired());
  EXPECT_TRUE(storage.expired()) << "the float32 buffer outlived the conversion";
  EXPECT_EQ(converted->weights->wcls.data, converted->weights->token_embedding.data);
}

INSTANTIATE_TEST_SUITE_P(Types, ConversionTest,
                         ::testing::Values(WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0),
                         [](const auto& info) { return std::string(WeightTypeName(info.param)); });

// Rows of a tensor in either layout, as floats.
std::vector<float> RowsOf(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.rows * t.cols));
  for (int64_t r = 0; r < t.rows; ++r) cpu::DequantizeRow(t, r, &out[r * t.cols]);
  return out;
}

// The CPU backend's packing: matrices of a type the set has a panel GEMM for
// go into panels (element by element as the layout defines, zero-padded);
// an untied embedding, the vectors, and types without a panel GEMM stay
// row-major; every value is kept, and nothing of the source.
TEST_P(ConversionTest, PackWeightsForKernelsLaysOutPanels) {
  const cpu::KernelSet& kernels = cpu::ActiveKernels();
  for (bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied classifier" : "separate classifier");
    absl::StatusOr<ConvertedWeights> typed = ConvertWeights(F32Model(tied), GetParam());
    ASSERT_TRUE(typed.ok()) << typed.status();
    std::shared_ptr<const ModelWeights> src = typed->weights;
    const std::weak_ptr<const ModelWeights> watch = src;
    absl::StatusOr<std::shared_ptr<const ModelWeights>> packed = PackWeightsForKernels(src, kernels, 2);
    ASSERT_TRUE(packed.ok()) << packed.status();
    const ModelWeights& w = **packed;
    const bool packs = kernels[GetParam()].gemm_panels != nullptr;
    if (!packs) {
      EXPECT_EQ(*packed, src) << "nothing to pack: the source itself";
      continue;
    }
    const TensorLayout panels = TensorLayout::kPanels16;
    EXPECT_EQ(w.wcls.layout, panels);
    EXPECT_EQ(w.token_embedding.layout, tied ? panels : TensorLayout::kRowMajor);
    EXPECT_EQ(tied, w.wcls.data == w.token_embedding.data);
    EXPECT_EQ(RowsOf(src->token_embedding), RowsOf(w.token_embedding));
    EXPECT_EQ(RowsOf(src->wcls), RowsOf(w.wcls));
    for (size_t i = 0; i < w.layers.size(); ++i) {
      const LayerWeights& a = src->layers[i];
      const LayerWeights& b = w.layers[i];
      for (auto [x, y] : LayerMatrices(*src, w, i)) {
        ASSERT_EQ(y->layout, panels);
        ASSERT_EQ(RowsOf(*x), RowsOf(*y));
        // Bytes as the layout defines them, the padding rows zero weights.
        const uint8_t* bytes = static_cast<const uint8_t*>(y->data);
        for (int64_t r = 0; r < y->stored_rows(); r += 7) {
          const uint8_t* row = r < x->rows ? static_cast<const uint8_t*>(x->row(r)) : nullptr;
          if (y->type == WeightType::kQ8_0) {
            // Per block of 32: the 16 rows' scales, then quants in groups
            // of 4 columns as [row][4], stored + 128.
            const int64_t blocks = y->cols / 32;
            for (int64_t b = 0; b < blocks; ++b) {
              const uint8_t* at = bytes + (r / 16) * blocks * 544 + b * 544;
              const uint16_t scale = row != nullptr ? row[b * 34] | row[b * 34 + 1] << 8 : 0;
              ASSERT_EQ(at[(r % 16) * 2] | at[(r % 16) * 2 + 1] << 8, scale) << "row " << r << " block " << b;
              for (int i = 0; i < 32; i += 3) {
                const uint8_t quant = row != nullptr ? row[b * 34 + 2 + i] : 0;
                ASSERT_EQ(at[32 + (i / 4) * 64 + (r % 16) * 4 + i % 4], quant ^ 0x80)
                    << "row " << r << " col " << b * 32 + i;
              }
            }
            continue;
          }
          const size_t element = RowBytes(y->type, 1);
          for (int64_t c = 0; c < y->cols; c += 5) {
            const uint8_t* at = bytes + ((r / 16) * y->cols * 16 + c * 16 + r % 16) * element;
            std::vector<uint8_t> expected(element, 0);
            if (row != nullptr) std::memcpy(expected.data(), row + c * element, element);
            ASSERT_EQ(std::memcmp(at, expected.data(), element), 0) << "row " << r << " col " << c;
          }
        }
      }
      EXPECT_EQ(b.rms_att.layout, TensorLayout::kRowMajor);
      EXPECT_NE(b.rms_att.data, a.rms_att.data);
      EXPECT_EQ(Floats(a.rms_att), Floats(b.rms_att));
    }
    src.reset();
    typed->weights.reset();
    EXPECT_TRUE(watch.expired()) << "the row-major weights outlived the packing";
  }
}

TEST(WeightConversion, BetweenStoredTypes) {
  // bf16 -> f16 -> f32: each step within its rounding of the previous.
  std::shared_ptr<const ModelWeights> src = F32Model(false);
  auto bf16 = ConvertWeights(src, WeightType::kBF16);
  ASSERT_TRUE(bf16.ok());
  auto f16 = ConvertWeights(bf16->weights, WeightType::kF16);
  ASSERT_TRUE(f16.ok());
  EXPECT_THAT(f16->note, HasSubstr("bfloat16 -> float16"));
  ExpectClose(bf16->weights->layers[0].wq, f16->weights->layers[0].wq, WeightType::kF16);
  auto q8 = ConvertWeights(f16->weights, WeightType::kQ8_0);
  ASSERT_TRUE(q8.ok());
  ExpectClose(f16->weights->layers[1].w2, q8->weights->layers[1].w2, WeightType::kQ8_0);
}

TEST(WeightConversion, Q8_0RefusesWidthsBlocksDoNotDivide) {
  absl::StatusOr<ModelConfig> config = DummyPresetConfig("tiny");  // hidden 172
  ASSERT_TRUE(config.ok());
  auto w = MakeDummyWeights(*config, 1);
  ASSERT_TRUE(w.ok());
  auto converted = ConvertWeights(std::shared_ptr<const ModelWeights>(*std::move(w)), WeightType::kQ8_0);
  ASSERT_FALSE(converted.ok());
  EXPECT_EQ(converted.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(converted.status().message(), HasSubstr("layers.0.w2 has 172 columns, not a multiple of 32"));
}

TEST(WeightConversion, ParsesTheFlagsValues) {
  EXPECT_EQ(*ParseWeightDtype("auto"), std::nullopt);
  EXPECT_EQ(*ParseWeightDtype("float32"), WeightType::kF32);
  EXPECT_EQ(*ParseWeightDtype("float16"), WeightType::kF16);
  EXPECT_EQ(*ParseWeightDtype("bfloat16"), WeightType::kBF16);
  EXPECT_EQ(*ParseWeightDtype("q8_0"), WeightType::kQ8_0);
  for (const char* bad : {"", "int4", "fp16", "Q8_0", "float64"}) {
    auto parsed = ParseWeightDtype(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr("expected auto, float32, float16, bfloat16 or q8_0"));
  }
}

// The loader applies it to every format, generated weights included.
TEST(WeightConversion, LoadModelConvertsDummyAndLlama2cWeights) {
  auto dummy = LoadModel("dummy:tiny", LoadOptions{.tokenizer_path = "", .dtype = WeightType::kBF16});
  ASSERT_TRUE(dummy.ok()) << dummy.status();
  EXPECT_EQ(dummy->weights->dtype, WeightType::kBF16);
  EXPECT_EQ(dummy->weights->layers[1].w3.type, WeightType::kBF16);
  EXPECT_THAT(dummy->conversion_note, HasSubstr("float32 -> bfloat16 in "));

  auto stories = LoadModel(INFERD_SOURCE_DIR "/models/stories260K", LoadOptions{.tokenizer_path = "", .dtype = WeightType::kF16});
  ASSERT_TRUE(stories.ok()) << stories.status();
  EXPECT_EQ(stories->weights->dtype, WeightType::kF16);

  auto as_stored = LoadModel(INFERD_SOURCE_DIR "/models/stories260K", LoadOptions{});
  ASSERT_TRUE(as_stored.ok());
  EXPECT_EQ(as_stored->weights->dtype, WeightType::kF32);
  EXPECT_TRUE(as_stored->conversion_note.empty());

  auto q8 = LoadModel(INFERD_SOURCE_DIR "/models/stories260K", LoadOptions{.tokenizer_path = "", .dtype = WeightType::kQ8_0});
  ASSERT_FALSE(q8.ok());
  EXPECT_THAT(q8.status().message(), HasSubstr("stories260K: --dtype q8_0: tensor layers.0.w2 has 172 columns"));
}

}  // namespace
}  // namespace inferd
