// Generation from one mixed-modal model: tokens, images and captions all go
// through MixedDecoder (fm/tasks/mixed_model.h).
#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops.h"
#include "fm/tasks/mixed.h"

namespace fm::tasks {
namespace {

// Decoding rows for beam search: batch * beam copies of [BOI] image [EOI ...].
class MixedTokenSource : public TokenSource {
 public:
  MixedTokenSource(const MixedModel& m, const Tensor& images, int64_t beam) : model_(m), decoder_(m) {
    const Tensor cpu = images.to(Device::cpu());
    std::vector<MixedSample> prompts;
    for (int64_t i = 0; i < cpu.size(0); ++i)
      for (int64_t j = 0; j < beam; ++j)
        prompts.push_back({text_piece({m.marker(Marker::begin_image)}),
                           image_piece(cpu.select(0, i))});
    decoder_.start(prompts);
  }
  Tensor next(const std::vector<int32_t>& tokens) override {
    return model_.text_logits(decoder_.append_text(std::vector<int64_t>(tokens.begin(), tokens.end())));
  }
  void select(const std::vector<int64_t>& rows) override { decoder_.select(rows); }

 private:
  const MixedModel& model_;
  MixedDecoder decoder_;
};

}  // namespace

std::vector<Decoded> mixed_caption_images(const MixedModel& m, const Tensor& images, int64_t end_of_text,
                                          const DecodeOptions& o, Generator* gen) {
  NoGradGuard ng;
  if (o.beam < 1) error("mixed captioning: beam must be at least 1, got ", o.beam);
  MixedTokenSource source(m, images, o.beam);
  return decode(source, images.size(0), int32_t(m.marker(Marker::end_image)), int32_t(end_of_text), o, gen);
}

Tensor mixed_generate_images(const MixedModel& m, const std::vector<std::vector<int64_t>>& captions,
                             objectives::Sampler& sampler, int64_t steps, double cfg, Generator& gen) {
  NoGradGuard ng;
  const int64_t N = int64_t(captions.size());
  if (N == 0) error("mixed image generation: no captions");
  const bool guided = cfg != 1.0;
  const int64_t BOI = m.marker(Marker::begin_image);
  std::vector<MixedSample> prompts;
  for (const auto& c : captions) {
    std::vector<int64_t> ids = c;
    ids.push_back(BOI);
    prompts.push_back({text_piece(ids)});
  }
  if (guided)
    for (int64_t i = 0; i < N; ++i) prompts.push_back({text_piece({BOI})});
  MixedDecoder decoder(m);
  decoder.start(prompts);
  const auto& o = m.options;
  const Device d = m.token_embedding->weight.device();
  const Tensor noise = randn({N, o.channels, o.image_size, o.image_size}, TensorOptions(DType::f32), &gen).to(d);
  const objectives::Denoiser denoise = [&](const Tensor& x, const Tensor& t) {
    if (!guided) return decoder.image(x, t);
    const Tensor out = decoder.image(cat({x, x}, 0), cat({t, t}, 0));
    const Tensor c = out.narrow(0, 0, N), u = out.narrow(0, N, N);
    return u + (c - u) * cfg;
  };
  return objectives::sample(sampler, denoise, noise, steps, &gen);
}

std::vector<int64_t> mixed_generate_text(const MixedModel& m, const std::vector<int64_t>& prompt,
                                         const SamplingOptions& o, Generator& gen) {
  NoGradGuard ng;
  if (prompt.empty()) error("mixed text generation: the prompt is empty");
  MixedDecoder decoder(m);
  Tensor h = decoder.start({{text_piece(prompt)}});
  std::vector<int64_t> out;
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    if (int64_t(prompt.size() + out.size()) >= m.options.max_positions) break;  // the positions end
    std::vector<float> logits = m.text_logits(h).select(0, 0).to(Device::cpu()).contiguous().to_vector<float>();
    logits.resize(size_t(m.options.vocab_size));  // text only: no marker opens an image or audio segment
    const int32_t next = pick_token(logits, o, gen);
    out.push_back(next);
    if (next == o.stop_token) break;
    h = decoder.append_text({next});
  }
  return out;
}

}  // namespace fm::tasks
