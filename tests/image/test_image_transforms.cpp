// fm::image transforms against torchvision.transforms.v2.functional on uint8
// tensors (tests/fixtures/make_image_fixtures.py writes the fixtures):
// resize (within 1 level of both of torchvision's uint8 paths),
// resize_shorter, crops, flip, tensor conversion, and
// RandomResizedCrop.get_params replayed on recorded draws.
#include <filesystem>
#include <iostream>
#include <random>
#include <sstream>

#include "fm/image/transforms.h"
#include "fm/io/safetensors.h"
#include "helpers.h"

using namespace fm;
using fm::image::Image;

namespace {

const io::Safetensors& fixture(const std::string& name) {
  static std::map<std::string, io::Safetensors> loaded;
  auto it = loaded.find(name);
  if (it == loaded.end()) {
    const auto path = std::filesystem::path(__FILE__).parent_path().parent_path() / "fixtures" / name;
    it = loaded.emplace(name, io::load_safetensors(path.string())).first;
  }
  return it->second;
}

const io::TensorMap& transforms() { return fixture("image_transforms.safetensors").tensors; }

Image from_hwc(const Tensor& t) {
  Image img = image::make_image(int(t.size(0)), int(t.size(1)), int(t.size(2)));
  img.data = t.to_vector<uint8_t>();
  return img;
}

const Image& source() {
  static const Image src = from_hwc(transforms().at("src"));
  return src;
}

// Largest |a - b| and how many bytes differ; max -1 when shapes differ.
struct Diff {
  int max = -1;
  size_t count = 0;
};
Diff diff(const Image& a, const Image& b) {
  Diff d;
  if (a.height != b.height || a.width != b.width || a.channels != b.channels) return d;
  d.max = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    const int e = std::abs(int(a.data[i]) - int(b.data[i]));
    d.max = std::max(d.max, e);
    d.count += e != 0;
  }
  return d;
}

// "<prefix><h>x<w>.<aa|noaa>" keys of the fixture.
struct ResizeCase {
  std::string tag;
  int height, width;
  bool antialias;
};
std::vector<ResizeCase> resize_cases() {
  std::vector<ResizeCase> cases;
  for (const auto& [key, t] : transforms()) {
    if (key.rfind("resize.", 0) != 0) continue;
    ResizeCase c;
    c.tag = key.substr(7);
    char x, dot;
    std::string mode;
    std::istringstream in(c.tag);
    in >> c.height >> x >> c.width >> dot >> mode;
    c.antialias = mode == "aa";
    cases.push_back(c);
  }
  return cases;
}

// Against both of torchvision's uint8 paths: within one level everywhere.
// Its float path (uint8 -> f32 -> interpolate -> round, taken on CPUs
// without AVX2) uses the same weights, so only values on a rounding tie may
// land on the other side (torch's FMA use moves their last bit); its native
// uint8 kernel (fixed-point weights, AVX2 CPUs) rounds differently on up to
// ~20% of bytes, as much as it differs from its own float path.
void expect_close_to(const std::string& prefix, double max_fraction) {
  const auto cases = resize_cases();
  ASSERT_EQ(cases.size(), 20u);
  size_t differing = 0, total = 0;
  for (const auto& c : cases) {
    const Image got = image::resize(source(), c.height, c.width, c.antialias);
    const Diff d = diff(got, from_hwc(transforms().at(prefix + c.tag)));
    EXPECT_GE(d.max, 0) << prefix << c.tag;
    EXPECT_LE(d.max, 1) << prefix << c.tag;
    differing += d.count, total += got.data.size();
  }
  std::cout << prefix << ": " << differing << " of " << total << " bytes differ by 1\n";
  EXPECT_LE(double(differing) / double(total), max_fraction);
}

TEST(ImageResize, MatchesTorchvisionFloatPathUpToTies) { expect_close_to("resize_f32.", 0.002); }

TEST(ImageResize, WithinOneLevelOfTorchvisionUint8Kernel) { expect_close_to("resize.", 0.25); }

TEST(ImageResize, AntialiasMattersWhenShrinking) {
  // The flag changes the result a lot here, so the fixtures tell them apart.
  const Image aa = image::resize(source(), 7, 5, true), plain = image::resize(source(), 7, 5, false);
  EXPECT_GT(diff(aa, plain).max, 5);
}

TEST(ImageResize, ConstantImageStaysConstant) {
  Image img = image::make_image(13, 29, 3);
  std::fill(img.data.begin(), img.data.end(), uint8_t(201));
  for (auto [h, w] : {std::pair{5, 3}, {40, 70}, {13, 8}, {1, 1}})
    for (bool aa : {true, false})
      for (uint8_t v : image::resize(img, h, w, aa).data) ASSERT_EQ(v, 201) << h << "x" << w;
}

TEST(ImageResize, GrayImagesAndErrors) {
  // One channel is the same arithmetic as each channel of RGB.
  Image gray = image::make_image(source().height, source().width, 1);
  for (int y = 0; y < gray.height; ++y)
    for (int x = 0; x < gray.width; ++x) gray.at(y, x, 0) = source().at(y, x, 1);
  const Image rgb = image::resize(source(), 17, 41), g = image::resize(gray, 17, 41);
  for (int y = 0; y < 17; ++y)
    for (int x = 0; x < 41; ++x) ASSERT_EQ(g.at(y, x, 0), rgb.at(y, x, 1));
  test::expect_error([] { image::resize(source(), 0, 4); }, "0x4");
  test::expect_error([] { image::resize(Image{}, 4, 4); }, "empty");
}

TEST(ImageResize, ShorterSideAsTorchvision) {
  for (const auto& [key, t] : transforms()) {
    if (key.rfind("resize_shorter.", 0) != 0) continue;
    const int size = std::stoi(key.substr(15));
    const Image got = image::resize_shorter(source(), size);
    const Image want = from_hwc(t);
    ASSERT_EQ(got.height, want.height) << key;
    ASSERT_EQ(got.width, want.width) << key;
    EXPECT_LE(diff(got, want).max, 1) << key;
  }
  // Wide images keep their width-to-height rule too: 31x43 -> 16 x int(16*43/31) = 16x22.
  Image wide = image::make_image(31, 43, 3);
  const Image r = image::resize_shorter(wide, 16);
  EXPECT_EQ(r.height, 16);
  EXPECT_EQ(r.width, 22);
}

TEST(ImageGeometry, CenterCropAsTorchvision) {
  int cases = 0;
  for (const auto& [key, t] : transforms()) {
    if (key.rfind("center_crop.", 0) != 0) continue;
    int h, w;
    char x;
    std::istringstream(key.substr(12)) >> h >> x >> w;
    const Diff d = diff(image::center_crop(source(), h, w), from_hwc(t));
    EXPECT_EQ(d.max, 0) << key;
    ++cases;
  }
  EXPECT_EQ(cases, 8);
}

TEST(ImageGeometry, CropAsTorchvisionIncludingOutside) {
  int cases = 0;
  for (const auto& [key, t] : transforms()) {
    if (key.rfind("crop.", 0) != 0) continue;
    std::string spec = key.substr(5);
    for (char& ch : spec)
      if (ch == '_' || ch == 'x') ch = ' ';
    std::istringstream in(spec);
    auto read_signed = [&] {
      std::string s;
      in >> s;
      return s[0] == 'm' ? -std::stoi(s.substr(1)) : std::stoi(s);
    };
    const int top = read_signed(), left = read_signed(), h = read_signed(), w = read_signed();
    EXPECT_EQ(diff(image::crop(source(), top, left, h, w), from_hwc(t)).max, 0) << key;
    ++cases;
  }
  EXPECT_EQ(cases, 4);
}

TEST(ImageGeometry, HflipAsTorchvision) {
  EXPECT_EQ(diff(image::hflip(source()), from_hwc(transforms().at("hflip"))).max, 0);
  EXPECT_EQ(diff(image::hflip(image::hflip(source())), source()).max, 0);
}

TEST(ImageTensor, ToTensorAsTorchvisionToDtypeAndNormalize) {
  const Tensor plain = image::to_tensor(source());
  EXPECT_EQ(plain.shape(), (Shape{3, 43, 31}));
  EXPECT_EQ(plain.dtype(), DType::f32);
  EXPECT_TRUE(test::all_close(plain, transforms().at("to_tensor"), 0, 0));
  const Tensor norm = image::to_tensor(source(), {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f});
  // Same f32 operations as torch: expect equality up to a last-bit slip.
  EXPECT_TRUE(test::all_close(norm, transforms().at("to_tensor_norm"), 1e-6, 1e-7));
  test::expect_error([] { image::to_tensor(source(), {0.5f}, {0.5f}); }, "3 channels");
  test::expect_error([] { image::to_tensor(source(), {0, 0, 0}, {1, 0, 1}); }, "std");
}

TEST(ImageTensor, FromTensorRoundsClampsAndInverts) {
  EXPECT_EQ(diff(image::from_tensor(image::to_tensor(source())), source()).max, 0);
  // save_image's rule, element by element, on values outside [0, 1] too.
  const Tensor t = rand({3, 4, 5}) * 1.4 - 0.2;
  const std::vector<float> v = t.to_vector<float>();
  const Image img = image::from_tensor(t);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 5; ++x) {
        const float e = std::clamp(v[size_t((c * 4 + y) * 5 + x)] * 255.0f + 0.5f, 0.0f, 255.0f);
        ASSERT_EQ(img.at(y, x, c), uint8_t(e));
      }
  EXPECT_EQ(image::from_tensor(zeros({1, 2, 2})).channels, 1);
  test::expect_error([] { image::from_tensor(zeros({2, 2, 2})); }, "C = 1 or 3");
  test::expect_error([] { image::from_tensor(zeros({3, 2, 2}, DType::u8)); }, "floating");
}

TEST(ImageRandomResizedCrop, ReplaysTorchvisionGetParams) {
  const io::TensorMap& f = fixture("image_rrc.safetensors").tensors;
  const auto size = f.at("size").to_vector<int64_t>(), params = f.at("params").to_vector<int64_t>(),
             used = f.at("draws_used").to_vector<int64_t>();
  const auto scale = f.at("scale").to_vector<double>(), ratio = f.at("ratio").to_vector<double>(),
             draws = f.at("draws").to_vector<double>();
  const size_t n = size.size() / 2, per_case = draws.size() / n;
  ASSERT_GT(n, 300u);
  size_t fallbacks = 0;
  for (size_t i = 0; i < n; ++i) {
    size_t next = 0;
    auto uniform = [&] { return next < per_case ? draws[i * per_case + next++] : (ADD_FAILURE(), 0.0); };
    const image::CropBox box = image::random_resized_crop_box(int(size[2 * i]), int(size[2 * i + 1]), uniform,
                                                              scale[2 * i], scale[2 * i + 1], ratio[2 * i],
                                                              ratio[2 * i + 1]);
    ASSERT_EQ((std::vector<int64_t>{box.top, box.left, box.height, box.width}),
              (std::vector<int64_t>(params.begin() + 4 * i, params.begin() + 4 * i + 4)))
        << "case " << i << ": " << size[2 * i] << "x" << size[2 * i + 1];
    EXPECT_EQ(int64_t(next), used[i]) << "case " << i;
    fallbacks += next == 20;
  }
  EXPECT_GT(fallbacks, 10u);  // the central fallback is exercised
  EXPECT_LT(fallbacks, n);    // and so are successful attempts
}

TEST(ImageRandomResizedCrop, BoxesFitAndFollowTheStream) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  for (int i = 0; i < 500; ++i) {
    const int h = 1 + int(rng() % 300), w = 1 + int(rng() % 300);
    const auto box = image::random_resized_crop_box(h, w, [&] { return u01(rng); });
    ASSERT_GE(box.top, 0);
    ASSERT_GE(box.left, 0);
    ASSERT_GT(box.height, 0);
    ASSERT_GT(box.width, 0);
    ASSERT_LE(box.top + box.height, h);
    ASSERT_LE(box.left + box.width, w);
  }
  test::expect_error([] { image::random_resized_crop_box(10, 10, [] { return 0.5; }, 0.9, 0.1); }, "scale");
}

}  // namespace
