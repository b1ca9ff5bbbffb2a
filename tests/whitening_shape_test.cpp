// zca/pca: the Normalizer refuses images of another width x height than its statistics' even when
// H*W*C equals D (issue 13, docs/design.md "Whitening loose ends"): 6x8 is not 8x6.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "imgnorm/array.hpp"
#include "imgnorm/dtype.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/normalize.hpp"
#include "imgnorm/pipeline.hpp"
#include "test_files.hpp"

using namespace imgnorm;
using namespace imgnorm::testing;

TEST(whitening_shape, the_normalizer_refuses_a_transposed_image_with_the_same_d) {
  constexpr int kW = 8, kH = 6, n = 4;
  for (Mode mode : {Mode::zca, Mode::pca}) {
    std::vector<std::uint8_t> px = test_pixels(kW, kH * n, 3, 7);
    NormalizeJob job;
    job.spec.mode = mode;
    job.fit = true;
    NormalizeInput in;
    in.source = "memory";
    in.array = ImageArray::from_memory(px.data(), DType::uint8, n, kH, kW, 3);
    Normalization run(job, std::move(in));
    PipelineOptions o;
    o.threads = 1;
    run.prepare(o);
    const Normalizer& norm = run.normalizer();
    std::vector<float> out(static_cast<std::size_t>(n) * kW * kH * 3);
    const ImageArray same = ImageArray::from_memory(px.data(), DType::uint8, n, kH, kW, 3, "same");
    normalize_rows(norm, same, out.data(), 1);
    const ImageArray swapped =
        ImageArray::from_memory(px.data(), DType::uint8, n, kW, kH, 3, "swapped");
    try {
      normalize_rows(norm, swapped, out.data(), 1);
      FAIL() << "a 6x8 image through the whitening of 8x6 images must be refused";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      EXPECT_EQ(std::string(e.what()),
                "swapped: row 0: image is 6x8, but the whitening matrix of "
                "--mode " +
                    std::string(to_string(mode)) +
                    " is for 8x6 images (the size of the statistics)");
    }
  }
}
