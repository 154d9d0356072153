// WAV, FLAC, Ogg and the other formats libsndfile reads, through its virtual
// I/O over memory.
#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "codecs.h"
#include "fm/error.h"
#include "memory_file.h"

namespace fm::audio::detail {
namespace {

sf_count_t vio_size(void* f) { return static_cast<MemoryFile*>(f)->size(); }
sf_count_t vio_seek(sf_count_t offset, int whence, void* f) { return static_cast<MemoryFile*>(f)->seek(offset, whence); }
sf_count_t vio_read(void* dst, sf_count_t n, void* f) { return static_cast<MemoryFile*>(f)->read(dst, n); }
sf_count_t vio_write(const void* src, sf_count_t n, void* f) { return static_cast<MemoryFile*>(f)->write(src, n); }
sf_count_t vio_tell(void* f) { return static_cast<MemoryFile*>(f)->tell(); }
SF_VIRTUAL_IO virtual_io{vio_size, vio_seek, vio_read, vio_write, vio_tell};

struct CloseSndfile {
  void operator()(SNDFILE* f) const { sf_close(f); }
};
using Sndfile = std::unique_ptr<SNDFILE, CloseSndfile>;

// Round x * scale to an integer in [-scale, scale - 1]: the exact inverse of
// libsndfile's int -> float reads (v / scale).
template <class Int>
Int quantize(float x, double scale) {
  return Int(std::clamp(std::nearbyint(double(x) * scale), -scale, scale - 1));
}

}  // namespace

bool sndfile_decode(const void* bytes, size_t size, const std::string& name, Audio* out, std::string* why_not) {
  MemoryFile file(bytes, size);
  SF_INFO info{};
  Sndfile sf(sf_open_virtual(&virtual_io, SFM_READ, &info, &file));
  if (!sf) {
    *why_not = sf_strerror(nullptr);
    return false;
  }
  if ((info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_MPEG) {
    *why_not = "MPEG audio goes to FFmpeg";
    return false;
  }
  const std::string op = "audio read: " + name;
  if (info.channels < 1) error(op, ": ", info.channels, " channels");
  check_sample_rate(info.samplerate, op);
  if (info.frames <= 0) error(op, ": no samples");
  // Read in blocks rather than trusting the header's frame count for one
  // allocation: a corrupt header may claim anything. A block is at most 2^20
  // samples whatever the channel count (1024 channels x 65536 frames: 256 MB).
  const sf_count_t block = std::clamp<sf_count_t>((sf_count_t(1) << 20) / info.channels, 1, 65536);
  std::vector<float>& samples = out->samples;
  for (;;) {
    const size_t at = samples.size();
    samples.resize(at + size_t(block) * info.channels);
    const sf_count_t got = sf_readf_float(sf.get(), samples.data() + at, block);
    samples.resize(at + size_t(std::max<sf_count_t>(got, 0)) * info.channels);
    if (got <= 0) break;
  }
  if (sf_error(sf.get()) != SF_ERR_NO_ERROR) error(op, ": ", sf_strerror(sf.get()));
  const int64_t frames = int64_t(samples.size()) / info.channels;
  if (frames < info.frames)
    error(op, ": header says ", info.frames, " frames but only ", frames, " could be decoded (truncated or corrupt file)");
  out->sample_rate = info.samplerate;
  out->channels = info.channels;
  return true;
}

std::string sndfile_encode(const Audio& audio, bool flac, Encoding encoding, const std::string& op) {
  int subtype = encoding == Encoding::pcm16 ? SF_FORMAT_PCM_16 : encoding == Encoding::pcm24 ? SF_FORMAT_PCM_24 : SF_FORMAT_FLOAT;
  if (flac && encoding == Encoding::f32) error(op, ": FLAC stores integers: use pcm16 or pcm24");
  for (size_t i = 0; i < audio.samples.size(); ++i)
    if (std::isnan(audio.samples[i])) error(op, ": sample ", i, " is NaN");
  SF_INFO info{};
  info.samplerate = audio.sample_rate;
  info.channels = audio.channels;
  info.format = (flac ? SF_FORMAT_FLAC : SF_FORMAT_WAV) | subtype;
  if (!sf_format_check(&info))
    error(op, ": libsndfile cannot write ", audio.channels, " channels at ", audio.sample_rate, " Hz in this format");
  MemoryFile file;
  Sndfile sf(sf_open_virtual(&virtual_io, SFM_WRITE, &info, &file));
  if (!sf) error(op, ": ", sf_strerror(nullptr));
  const sf_count_t frames = audio.frames();
  sf_count_t wrote = 0;
  if (encoding == Encoding::f32) {
    wrote = sf_writef_float(sf.get(), audio.samples.data(), frames);
  } else if (encoding == Encoding::pcm16) {
    std::vector<short> pcm(audio.samples.size());
    for (size_t i = 0; i < pcm.size(); ++i) pcm[i] = quantize<short>(audio.samples[i], 32768.0);
    wrote = sf_writef_short(sf.get(), pcm.data(), frames);
  } else {  // 24-bit values in the top bits of ints, as libsndfile expects
    std::vector<int> pcm(audio.samples.size());
    for (size_t i = 0; i < pcm.size(); ++i) pcm[i] = quantize<int>(audio.samples[i], 8388608.0) * 256;
    wrote = sf_writef_int(sf.get(), pcm.data(), frames);
  }
  if (wrote != frames) error(op, ": ", sf_strerror(sf.get()));
  if (sf_close(sf.release()) != 0) error(op, ": libsndfile could not finish the file");
  return file.bytes();
}

}  // namespace fm::audio::detail
