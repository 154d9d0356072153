// MP3, AAC/M4A and everything else libsndfile does not read, through
// libavformat and libavcodec over memory. Strict, unlike the ffmpeg program:
// a packet the decoder rejects is an error, not a gap, and so is a stream
// that ends well before the duration its header declares.
#include <memory>

#include "codecs.h"
#include "ffmpeg_util.h"
#include "fm/error.h"

namespace fm::audio::detail {
namespace {

struct CloseInput {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};

// Decoded frames in any sample format, converted to interleaved f32 by
// libswresample at the same rate and layout (s16 v -> v / 32768, ...).
class Collector {
 public:
  explicit Collector(std::string op) : op_(std::move(op)) {}
  ~Collector() { av_channel_layout_uninit(&layout_); }

  void add(const AVFrame* frame) {
    if (!swr_) start(frame);
    if (frame->format != format_ || frame->sample_rate != rate_ || av_channel_layout_compare(&frame->ch_layout, &layout_) != 0)
      error(op_, ": the stream changes its sample format, rate or channels part way through");
    const size_t at = samples.size();
    samples.resize(at + size_t(frame->nb_samples) * channels());
    auto* dst = reinterpret_cast<uint8_t*>(samples.data() + at);
    const int got = swr_convert(swr_.get(), &dst, frame->nb_samples, const_cast<const uint8_t**>(frame->extended_data),
                                frame->nb_samples);
    if (got < 0) error(op_, ": sample conversion failed (", av_error_text(got), ")");
    samples.resize(at + size_t(got) * channels());
  }
  int channels() const { return layout_.nb_channels; }
  int rate() const { return rate_; }

  std::vector<float> samples;

 private:
  void start(const AVFrame* frame) {
    format_ = frame->format, rate_ = frame->sample_rate;
    const std::string what = op_ + ": decoded audio";
    check_sample_rate(rate_, what);
    if (frame->ch_layout.nb_channels < 1) error(what, " has no channels");
    if (av_channel_layout_copy(&layout_, &frame->ch_layout) < 0) error(op_, ": out of memory");
    SwrContext* swr = nullptr;
    int rc = swr_alloc_set_opts2(&swr, &layout_, AV_SAMPLE_FMT_FLT, rate_, &layout_, AVSampleFormat(format_), rate_, 0,
                                 nullptr);
    swr_.reset(swr);
    if (rc >= 0) rc = swr_init(swr);
    if (rc < 0) error(what, ": libswresample cannot convert its sample format (", av_error_text(rc), ")");
  }

  std::string op_;
  std::unique_ptr<SwrContext, FreeSwr> swr_;
  AVChannelLayout layout_{};
  int format_ = -1, rate_ = 0;
};

}  // namespace

Audio ffmpeg_decode(const void* bytes, size_t size, const std::string& name, const std::string& sndfile_said) {
  const std::string op = "audio read: " + name;
  MemoryFile file(bytes, size);
  MemoryIO io(&file, false);
  AVFormatContext* raw = avformat_alloc_context();
  if (!io.get() || !raw) {
    avformat_free_context(raw);
    error(op, ": out of memory");
  }
  raw->pb = io.get();
  // The name only guides probing (its extension); bytes come from memory.
  int rc = avformat_open_input(&raw, name.c_str(), nullptr, nullptr);  // frees raw on failure
  if (rc < 0)
    error(op, ": not an audio file that libsndfile or FFmpeg can read (libsndfile: ", sndfile_said,
          "; FFmpeg: ", av_error_text(rc), ")");
  std::unique_ptr<AVFormatContext, CloseInput> input(raw);
  if ((rc = avformat_find_stream_info(input.get(), nullptr)) < 0)
    error(op, ": corrupt or truncated (FFmpeg: ", av_error_text(rc), ")");
  const AVCodec* codec = nullptr;
  const int index = av_find_best_stream(input.get(), AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
  if (index < 0)
    error(op, ": no audio stream FFmpeg can decode (", input->iformat->name, " file: ", av_error_text(index), ")");
  const AVStream* stream = input->streams[index];

  std::unique_ptr<AVCodecContext, FreeCodec> dec(avcodec_alloc_context3(codec));
  if (!dec) error(op, ": out of memory");
  if ((rc = avcodec_parameters_to_context(dec.get(), stream->codecpar)) >= 0) {
    dec->pkt_timebase = stream->time_base;  // lets the decoder trim delay and padding by timestamp
    rc = avcodec_open2(dec.get(), codec, nullptr);
  }
  if (rc < 0)
    error(op, ": cannot open the ", codec->name, " decoder (", av_error_text(rc), ")");

  std::unique_ptr<AVPacket, FreePacket> packet(av_packet_alloc());
  std::unique_ptr<AVFrame, FreeFrame> frame(av_frame_alloc());
  if (!packet || !frame) error(op, ": out of memory");
  Collector out(op);
  const auto corrupt = [&](int code) {
    error(op, ": corrupt ", codec->name, " data near ", double(out.samples.size()) / std::max(1, out.channels()) /
                                                           std::max(1, out.rate()),
          " s (FFmpeg: ", av_error_text(code), ")");
  };
  const auto drain = [&] {
    for (;;) {
      const int r = avcodec_receive_frame(dec.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      if (r < 0) corrupt(r);
      if ((frame->flags & AV_FRAME_FLAG_CORRUPT) || frame->decode_error_flags) corrupt(AVERROR_INVALIDDATA);
      out.add(frame.get());
      av_frame_unref(frame.get());
    }
  };
  while ((rc = av_read_frame(input.get(), packet.get())) >= 0) {
    if (packet->stream_index == index) {
      const int sent = avcodec_send_packet(dec.get(), packet.get());
      av_packet_unref(packet.get());
      if (sent < 0) corrupt(sent);
      drain();
    } else {
      av_packet_unref(packet.get());
    }
  }
  if (rc != AVERROR_EOF) corrupt(rc);
  if ((rc = avcodec_send_packet(dec.get(), nullptr)) < 0) corrupt(rc);
  drain();
  if (out.samples.empty()) error(op, ": no samples");

  Audio audio;
  audio.sample_rate = out.rate();
  audio.channels = out.channels();
  audio.samples = std::move(out.samples);
  // A duration read from the header (an MP3's Xing/Info frame count, an MP4's
  // moov) that the data fall short of means a cut file. The header counts
  // the encoder's delay and padding, which decoding drops (LAME: 1105 samples
  // of delay, up to a frame and more of padding): allow four codec frames
  // and LAME's delay, so only files cut by more than that are caught.
  if (input->duration_estimation_method == AVFMT_DURATION_FROM_STREAM && stream->duration != AV_NOPTS_VALUE &&
      stream->duration > 0) {
    const int64_t declared = av_rescale_q(stream->duration, stream->time_base, AVRational{1, audio.sample_rate});
    const int64_t slack = 4 * int64_t(dec->frame_size > 0 ? dec->frame_size : 1152) + 1105;
    if (audio.frames() + slack < declared)
      error(op, ": header declares ", double(declared) / audio.sample_rate, " s but the data hold ", audio.seconds(),
            " s (truncated file)");
    // FFmpeg drops an MP4's priming samples but keeps the encoder's padding
    // at the end (so does the ffmpeg program): the edit list's duration is
    // where the audio ends.
    if (audio.frames() > declared && audio.frames() - declared <= slack)
      audio.samples.resize(size_t(declared) * audio.channels);
  }
  return audio;
}

}  // namespace fm::audio::detail
