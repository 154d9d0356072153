// Generation from one mixed-modal model: tokens, images and captions all go
// through MixedDecoder (fm/tasks/mixed_model.h).
#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops.h"
#include "fm/tasks/mixed.h"
#include "fm/tasks/music_model.h"

namespace fm::tasks {
namespace {

// Decoding rows for beam search: batch * beam copies of each prompt (a
// prefix such as [BOI] image), continued by the start token and the caption.
class MixedTokenSource : public TokenSource {
 public:
  MixedTokenSource(const MixedModel& m, const std::vector<MixedSample>& prompts, int64_t beam)
      : model_(m), decoder_(m) {
    std::vector<MixedSample> rows;
    for (const MixedSample& p : prompts)
      for (int64_t j = 0; j < beam; ++j) rows.push_back(p);
    decoder_.start(rows);
  }
  Tensor next(const std::vector<int32_t>& tokens) override {
    return model_.text_logits(decoder_.append_text(std::vector<int64_t>(tokens.begin(), tokens.end())));
  }
  void select(const std::vector<int64_t>& rows) override { decoder_.select(rows); }

 private:
  const MixedModel& model_;
  MixedDecoder decoder_;
};

std::vector<Decoded> caption_prompts(const MixedModel& m, const std::vector<MixedSample>& prompts, Marker start,
                                     int64_t end_of_text, const DecodeOptions& o, Generator* gen) {
  NoGradGuard ng;
  if (o.beam < 1) error("mixed captioning: beam must be at least 1, got ", o.beam);
  MixedTokenSource source(m, prompts, o.beam);
  return decode(source, int64_t(prompts.size()), int32_t(m.marker(start)), int32_t(end_of_text), o, gen);
}

}  // namespace

std::vector<Decoded> mixed_caption_images(const MixedModel& m, const Tensor& images, int64_t end_of_text,
                                          const DecodeOptions& o, Generator* gen) {
  const Tensor cpu = images.to(Device::cpu());
  std::vector<MixedSample> prompts;
  for (int64_t i = 0; i < cpu.size(0); ++i)
    prompts.push_back({text_piece({m.marker(Marker::begin_image)}), image_piece(cpu.select(0, i))});
  return caption_prompts(m, prompts, Marker::end_image, end_of_text, o, gen);
}

std::vector<Decoded> mixed_caption_codes(const MixedModel& m, const Tensor& codes, int64_t end_of_text,
                                         const DecodeOptions& o, Generator* gen) {
  const Tensor steps = apply_delay_pattern(codes.to(Device::cpu()).to(DType::i64), m.audio_special());
  std::vector<MixedSample> prompts;
  for (int64_t i = 0; i < steps.size(0); ++i)
    prompts.push_back({text_piece({m.marker(Marker::begin_audio)}), audio_piece(steps.select(0, i).contiguous())});
  return caption_prompts(m, prompts, Marker::end_audio, end_of_text, o, gen);
}

Tensor mixed_generate_codes(const MixedModel& m, const std::vector<std::vector<int64_t>>& captions, int64_t frames,
                            const MusicSampling& s, Generator& gen) {
  NoGradGuard ng;
  const int64_t N = int64_t(captions.size()), K = m.options.n_codebooks, special = m.audio_special();
  if (N == 0) error("mixed music generation: no captions");
  if (K == 0) error("mixed music generation: this model has no audio codebooks");
  const bool guided = s.guidance != 1.0;
  const int64_t BOA = m.marker(Marker::begin_audio);
  std::vector<MixedSample> prompts;
  for (const auto& c : captions) {
    std::vector<int64_t> ids = c;
    ids.push_back(BOA);
    prompts.push_back({text_piece(ids)});
  }
  if (guided)
    for (int64_t i = 0; i < N; ++i) prompts.push_back({text_piece({BOA})});
  MixedDecoder decoder(m);
  Tensor h = decoder.start(prompts);
  SamplingOptions so;
  so.temperature = s.temperature;
  so.top_k = s.top_k;
  so.top_p = s.top_p > 0 ? s.top_p : 1.0;
  const int64_t S = frames + K - 1;
  std::vector<int64_t> steps(static_cast<size_t>(N * K * S));  // [N, K, S]
  for (int64_t step = 0; step < S; ++step) {
    Tensor logits = m.audio_logits(h).to(Device::cpu()).to(DType::f32);  // [R, K, codebook_size]
    if (guided) {
      const Tensor c = logits.narrow(0, 0, N), u = logits.narrow(0, N, N);
      logits = u + (c - u) * s.guidance;
    }
    const std::vector<float> l = logits.contiguous().to_vector<float>();
    const int64_t V = m.options.codebook_size;
    std::vector<int64_t> next(static_cast<size_t>(N * K));
    for (int64_t i = 0; i < N; ++i)
      for (int64_t k = 0; k < K; ++k) {
        const bool has_frame = step >= k && step < frames + k;  // the delay pattern's filler elsewhere
        const size_t at = size_t(i * K + k);
        next[at] = has_frame ? pick_token(std::vector<float>(l.begin() + int64_t(at) * V, l.begin() + int64_t(at + 1) * V), so, gen)
                             : special;
        steps[size_t((i * K + k) * S + step)] = next[at];
      }
    if (step + 1 == S) break;
    std::vector<int64_t> rows = next;
    if (guided) rows.insert(rows.end(), next.begin(), next.end());
    h = decoder.append_audio(tensor(rows, {int64_t(rows.size()) / K, K}));
  }
  return revert_delay_pattern(tensor(steps, {N, K, S}));
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
