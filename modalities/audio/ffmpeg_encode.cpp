// MP3 files through FFmpeg's libmp3lame encoder and its MP3 muxer, which
// writes a Xing/LAME header (frame count, encoder delay and padding) so that
// readers can drop the padding again.
extern "C" {
#include <libavutil/channel_layout.h>
}

#include <algorithm>
#include <cmath>
#include <memory>

#include "codecs.h"
#include "ffmpeg_util.h"
#include "fm/error.h"

namespace fm::audio::detail {
namespace {

struct FreeOutput {
  void operator()(AVFormatContext* f) const { avformat_free_context(f); }
};

}  // namespace

std::string ffmpeg_encode_mp3(const Audio& audio, int bitrate, const std::string& op) {
  const AVCodec* codec = avcodec_find_encoder_by_name("libmp3lame");
  if (!codec) error(op, ": this FFmpeg build has no MP3 encoder (libmp3lame); write .wav or .flac");
  if (audio.channels > 2) error(op, ": MP3 takes 1 or 2 channels, not ", audio.channels, " (see fm::audio::mix)");
  if (bitrate < 8000 || bitrate > 320000) error(op, ": MP3 bitrate ", bitrate, " outside [8000, 320000]");
  bool rate_ok = false;
  for (const int* r = codec->supported_samplerates; r && *r; ++r) rate_ok |= *r == audio.sample_rate;
  if (!rate_ok)
    error(op, ": MP3 cannot store ", audio.sample_rate, " Hz (it takes 8, 11.025, 12, 16, 22.05, 24, 32, 44.1 or 48 kHz;",
          " see fm::audio::resample)");
  for (size_t i = 0; i < audio.samples.size(); ++i)
    if (std::isnan(audio.samples[i])) error(op, ": sample ", i, " is NaN");

  std::unique_ptr<AVCodecContext, FreeCodec> enc(avcodec_alloc_context3(codec));
  if (!enc) error(op, ": out of memory");
  enc->sample_fmt = AV_SAMPLE_FMT_FLTP;
  enc->sample_rate = audio.sample_rate;
  enc->bit_rate = bitrate;
  enc->time_base = AVRational{1, audio.sample_rate};
  enc->flags |= AV_CODEC_FLAG_BITEXACT;  // no version string: the same input gives the same bytes
  av_channel_layout_default(&enc->ch_layout, audio.channels);

  AVFormatContext* raw = nullptr;
  int rc = avformat_alloc_output_context2(&raw, nullptr, "mp3", nullptr);
  if (rc < 0) error(op, ": FFmpeg has no MP3 muxer (", av_error_text(rc), ")");
  std::unique_ptr<AVFormatContext, FreeOutput> output(raw);
  output->flags |= AVFMT_FLAG_BITEXACT;
  if (output->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if ((rc = avcodec_open2(enc.get(), codec, nullptr)) < 0)
    error(op, ": cannot open the MP3 encoder (", av_error_text(rc), ")");
  AVStream* stream = avformat_new_stream(output.get(), nullptr);
  if (!stream) error(op, ": out of memory");
  stream->time_base = enc->time_base;
  if ((rc = avcodec_parameters_from_context(stream->codecpar, enc.get())) < 0)
    error(op, ": ", av_error_text(rc));

  MemoryFile file;
  MemoryIO io(&file, true);
  if (!io.get()) error(op, ": out of memory");
  output->pb = io.get();
  if ((rc = avformat_write_header(output.get(), nullptr)) < 0) error(op, ": cannot start the MP3 file (", av_error_text(rc), ")");

  std::unique_ptr<AVPacket, FreePacket> packet(av_packet_alloc());
  std::unique_ptr<AVFrame, FreeFrame> frame(av_frame_alloc());
  if (!packet || !frame) error(op, ": out of memory");
  const auto send = [&](const AVFrame* f) {
    if ((rc = avcodec_send_frame(enc.get(), f)) < 0) error(op, ": MP3 encoding failed (", av_error_text(rc), ")");
    while ((rc = avcodec_receive_packet(enc.get(), packet.get())) >= 0) {
      av_packet_rescale_ts(packet.get(), enc->time_base, stream->time_base);
      packet->stream_index = stream->index;
      if ((rc = av_interleaved_write_frame(output.get(), packet.get())) < 0)
        error(op, ": cannot write an MP3 frame (", av_error_text(rc), ")");
    }
    if (rc != AVERROR(EAGAIN) && rc != AVERROR_EOF) error(op, ": MP3 encoding failed (", av_error_text(rc), ")");
  };
  // Full frames of frame_size samples; the encoder takes a short last one
  // (AV_CODEC_CAP_SMALL_LAST_FRAME) and pads it itself.
  const int64_t frames = audio.frames(), step = enc->frame_size > 0 ? enc->frame_size : 1152;
  const bool small_last = codec->capabilities & AV_CODEC_CAP_SMALL_LAST_FRAME;
  for (int64_t t0 = 0; t0 < frames; t0 += step) {
    const int n = int(std::min(step, frames - t0));
    frame->nb_samples = small_last ? n : int(step);
    frame->format = enc->sample_fmt;
    frame->sample_rate = enc->sample_rate;
    if ((rc = av_channel_layout_copy(&frame->ch_layout, &enc->ch_layout)) < 0 || (rc = av_frame_get_buffer(frame.get(), 0)) < 0)
      error(op, ": out of memory");
    for (int c = 0; c < audio.channels; ++c) {
      auto* plane = reinterpret_cast<float*>(frame->extended_data[c]);
      for (int i = 0; i < frame->nb_samples; ++i)
        plane[i] = i < n ? audio.samples[size_t((t0 + i) * audio.channels + c)] : 0.0f;
    }
    frame->pts = t0;
    send(frame.get());
    av_frame_unref(frame.get());
  }
  send(nullptr);  // flush the encoder's delayed frames
  if ((rc = av_write_trailer(output.get())) < 0) error(op, ": cannot finish the MP3 file (", av_error_text(rc), ")");
  avio_flush(io.get());
  return file.bytes();
}

}  // namespace fm::audio::detail
