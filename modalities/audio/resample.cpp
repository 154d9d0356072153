// Sample-rate conversion through libswresample (windowed sinc, its default
// filter), in blocks so that any length fits its int sample counts.
extern "C" {
#include <libavutil/channel_layout.h>
#include <libswresample/swresample.h>
}

#include <algorithm>
#include <memory>

#include "codecs.h"
#include "ffmpeg_util.h"
#include "fm/error.h"

namespace fm::audio {

Audio resample(const Audio& audio, int rate) {
  const std::string op = "audio resample";
  detail::check_audio(audio, op);
  detail::check_sample_rate(rate, op + " to");
  if (rate == audio.sample_rate) return audio;
  const int C = audio.channels;
  AVChannelLayout layout{};
  av_channel_layout_default(&layout, C);
  SwrContext* raw = nullptr;
  int rc = swr_alloc_set_opts2(&raw, &layout, AV_SAMPLE_FMT_FLT, rate, &layout, AV_SAMPLE_FMT_FLT, audio.sample_rate, 0,
                               nullptr);
  av_channel_layout_uninit(&layout);
  std::unique_ptr<SwrContext, detail::FreeSwr> swr(raw);
  if (rc >= 0) rc = swr_init(swr.get());
  if (rc < 0) error(op, ": libswresample refuses ", audio.sample_rate, " Hz -> ", rate, " Hz (", detail::av_error_text(rc), ")");

  const int64_t in_frames = audio.frames();
  const int64_t want = (in_frames * rate + audio.sample_rate - 1) / audio.sample_rate;  // ceil
  Audio out;
  out.sample_rate = rate;
  out.channels = C;
  out.samples.reserve(size_t(want) * C);
  const int64_t block = 1 << 16;
  // in == nullptr flushes the filter's tail.
  const auto convert = [&](const float* in, int n) {
    const int room = swr_get_out_samples(swr.get(), n);
    if (room < 0) error(op, ": ", detail::av_error_text(room));
    const size_t at = out.samples.size();
    out.samples.resize(at + size_t(room) * C);
    auto* dst = reinterpret_cast<uint8_t*>(out.samples.data() + at);
    const auto* src = reinterpret_cast<const uint8_t*>(in);
    const int got = swr_convert(swr.get(), &dst, room, in ? &src : nullptr, n);
    if (got < 0) error(op, ": ", detail::av_error_text(got));
    out.samples.resize(at + size_t(got) * C);
    return got;
  };
  for (int64_t t = 0; t < in_frames; t += block)
    convert(audio.samples.data() + size_t(t) * C, int(std::min(block, in_frames - t)));
  while (convert(nullptr, 0) > 0) {
  }
  out.samples.resize(size_t(want) * C, 0.0f);  // drop or zero-pad the last partial frame
  return out;
}

}  // namespace fm::audio
