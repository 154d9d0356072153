// fm::audio read/decode/write/resample/mix against what the sox and ffmpeg
// programs make of the same files (tests/fixtures/make_audio_fixtures.sh):
// lossless formats sample for sample, lossy ones against the reference
// decoder of their codec, resampling by the tone it must keep, round trips
// through every writer, and bad files that must throw fm::Error naming them.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "fm/audio/audio.h"
#include "helpers.h"

using namespace fm;
using fm::audio::Audio;

namespace {

std::string fixture(const std::string& name) {
  return (std::filesystem::path(__FILE__).parent_path().parent_path() / "fixtures" / name).string();
}

// A raw little-endian f32 dump (sox -t f32, ffmpeg -f f32le).
std::vector<float> raw_f32(const std::string& name) {
  const std::string bytes = test::read_file(fixture(name));
  EXPECT_FALSE(bytes.empty()) << name;
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

// Every |a - b| <= atol (allclose with rtol 0: samples sit in [-1, 1]).
::testing::AssertionResult samples_close(const std::vector<float>& a, const std::vector<float>& b, double atol) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << a.size() << " samples vs expected " << b.size();
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(double(a[i]) - b[i]) <= atol))
      return ::testing::AssertionFailure() << "sample " << i << ": " << a[i] << " vs expected " << b[i];
  return ::testing::AssertionSuccess();
}

// Amplitude of the `hz` sinusoid in channel c (least squares on sin and cos
// over whole periods is close enough over many periods).
double tone_amplitude(const Audio& a, int c, double hz, int64_t skip = 0) {
  double s = 0, co = 0;
  int64_t n = 0;
  for (int64_t t = skip; t < a.frames() - skip; ++t, ++n) {
    const double x = a.samples[size_t(t * a.channels + c)], w = 2 * M_PI * hz * double(t) / a.sample_rate;
    s += x * std::sin(w), co += x * std::cos(w);
  }
  return 2 * std::hypot(s, co) / double(n);
}

// 10 log10(signal power / error power) of `got` against `want`.
double snr_db(const std::vector<float>& got, const std::vector<float>& want) {
  double sig = 0, err = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    sig += double(want[i]) * want[i], err += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
  return 10 * std::log10(sig / std::max(err, 1e-30));
}

Audio random_audio(int rate, int channels, int64_t frames, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Audio a;
  a.sample_rate = rate, a.channels = channels;
  a.samples.resize(size_t(frames) * channels);
  for (auto& v : a.samples) v = u(rng);
  return a;
}

struct DecodeCase {
  std::string file, expected;  // the fixture and its reference decode
  double atol;
};

class DecodeTest : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(DecodeTest, MatchesReferenceDecoder) {
  const DecodeCase& c = GetParam();
  const Audio got = audio::read(fixture(c.file));
  EXPECT_EQ(got.sample_rate, 22050);
  EXPECT_EQ(got.channels, 2);
  std::vector<float> want = raw_f32(c.expected);
  if (c.file == "audio_tone.m4a") want.resize(std::min(want.size(), got.samples.size()));  // see ffmpeg_decode.cpp
  EXPECT_TRUE(samples_close(got.samples, want, c.atol)) << c.file;
}

// Lossless: sox's decode exactly (its f32 output is v / 2^31 of its 32-bit
// samples, exact for 16 and 24 bits; float WAVs pass through sox's 32-bit
// integers, hence 1e-9). Ogg: sox and libsndfile both call libvorbis, but
// sox asks it for 16-bit samples: within 1 LSB of 16 bits.
// MP3 and AAC: the ffmpeg program's own decode, through the same decoders
// (which keeps an MP4's end padding: read() stops where the edit list ends,
// so the M4A is checked against the first 0.1 s of it).
INSTANTIATE_TEST_SUITE_P(Formats, DecodeTest,
                         ::testing::Values(DecodeCase{"audio_tone_s16.wav", "audio_tone_s16.f32", 0.0},
                                           DecodeCase{"audio_tone_s24.wav", "audio_tone_s24.f32", 0.0},
                                           DecodeCase{"audio_tone_f32.wav", "audio_tone_f32.f32", 1e-9},
                                           DecodeCase{"audio_tone.flac", "audio_tone_s16.f32", 0.0},
                                           DecodeCase{"audio_tone.ogg", "audio_tone_ogg.f32", 1.0 / 32768},
                                           DecodeCase{"audio_tone.mp3", "audio_tone_mp3.f32", 1e-6},
                                           DecodeCase{"audio_tone.m4a", "audio_tone_m4a.f32", 1e-6}),
                         [](const auto& info) {
                           std::string n = info.param.file.substr(11);  // after "audio_tone_" / "audio_tone."
                           for (char& ch : n) ch = std::isalnum((unsigned char)ch) ? ch : '_';
                           return n;
                         });

TEST(AudioRead, ToneIsWhereSoxPutIt) {
  const Audio a = audio::read(fixture("audio_tone_s16.wav"));
  ASSERT_EQ(a.frames(), 2205);
  EXPECT_NEAR(a.seconds(), 0.1, 1e-12);
  EXPECT_NEAR(tone_amplitude(a, 0, 440), 0.5, 2e-3);  // left: 440 Hz
  EXPECT_NEAR(tone_amplitude(a, 1, 1000), 0.5, 2e-3);  // right: 1 kHz
  EXPECT_LT(tone_amplitude(a, 0, 1000), 0.02);
}

TEST(AudioRead, LossyFilesKeepRateAndDuration) {
  const Audio mp3 = audio::read(fixture("audio_tone.mp3"));
  EXPECT_EQ(mp3.frames(), 2205);  // LAME's delay and padding dropped
  const Audio m4a = audio::read(fixture("audio_tone.m4a"));
  EXPECT_EQ(m4a.frames(), 2205);  // priming and end padding dropped
  for (const Audio* a : {&mp3, &m4a}) {
    EXPECT_EQ(a->sample_rate, 22050);
    EXPECT_NEAR(tone_amplitude(*a, 1, 1000, 0), 0.5, 0.05);
  }
}

TEST(AudioRead, MonoAt8k) {
  const Audio a = audio::read(fixture("audio_mono8k.wav"));
  EXPECT_EQ(a.sample_rate, 8000);
  EXPECT_EQ(a.channels, 1);
  EXPECT_EQ(a.frames(), 800);
  EXPECT_NEAR(tone_amplitude(a, 0, 1000), 0.5, 2e-3);
}

TEST(AudioRead, DecodeFromMemoryEqualsRead) {
  for (const char* name : {"audio_tone.flac", "audio_tone.mp3"}) {
    const std::string bytes = test::read_file(fixture(name));
    const Audio a = audio::decode(bytes.data(), bytes.size(), name), b = audio::read(fixture(name));
    EXPECT_EQ(a.samples, b.samples) << name;
  }
}

// Bad files: one fm::Error naming the file and what is wrong; never a crash.
struct BadCase {
  std::string file, says;
};

class BadFileTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadFileTest, ThrowsNamingTheFile) {
  const BadCase& c = GetParam();
  const std::string msg = test::error_of([&] { audio::read(fixture(c.file)); });
  EXPECT_NE(msg.find(c.file), std::string::npos) << msg;
  EXPECT_NE(msg.find(c.says), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BadFileTest,
                         ::testing::Values(BadCase{"audio_bad_cut_header.wav", "not an audio file"},
                                           BadCase{"audio_bad_truncated.wav", "claims 8820 bytes but the file holds 2956"},
                                           BadCase{"audio_bad_long_header.wav", "claims 100000 bytes"},
                                           BadCase{"audio_bad_empty.wav", "no samples"},
                                           BadCase{"audio_bad_text.wav", "not an audio file"},
                                           BadCase{"audio_bad_truncated.mp3", "truncated"},
                                           BadCase{"audio_bad_corrupt.mp3", "corrupt"}),
                         [](const auto& info) { return std::to_string(info.index); });

class AudioFiles : public test::TempDirTest {
 protected:
  AudioFiles() : TempDirTest("fm_audio_") {}
  // The s16 fixture with its header's sample rate (bytes 24..27) replaced.
  std::string wav_with_rate(uint32_t rate) {
    std::string bytes = test::read_file(fixture("audio_tone_s16.wav"));
    for (int i = 0; i < 4; ++i) bytes[24 + i] = char((rate >> (8 * i)) & 0xFF);
    const std::string p = path("rate_" + std::to_string(rate) + ".wav");
    test::write_file(p, bytes);
    return p;
  }
};

TEST_F(AudioFiles, MissingEmptyAndBadRateFilesThrow) {
  test::expect_error([&] { audio::read(path("missing.wav")); }, "missing.wav");
  test::write_file(path("empty.mp3"), "");
  test::expect_error([&] { audio::read(path("empty.mp3")); }, "empty.mp3: empty file");
  const std::string zero = wav_with_rate(0), huge = wav_with_rate(10000000);
  test::expect_error([&] { audio::read(zero); }, "rate_0.wav");
  test::expect_error([&] { audio::read(huge); }, "rate_10000000.wav: sample rate 10000000 Hz outside");
}

TEST_F(AudioFiles, LosslessRoundTrips) {
  struct Case {
    const char* source;
    const char* out;
    audio::Encoding encoding;
  };
  for (const Case& c : {Case{"audio_tone_s16.wav", "a.wav", audio::Encoding::pcm16},
                        Case{"audio_tone_s24.wav", "b.wav", audio::Encoding::pcm24},
                        Case{"audio_tone_f32.wav", "c.wav", audio::Encoding::f32},
                        Case{"audio_tone_s16.wav", "d.flac", audio::Encoding::pcm16},
                        Case{"audio_tone_s24.wav", "e.flac", audio::Encoding::pcm24}}) {
    const Audio a = audio::read(fixture(c.source));
    audio::write(path(c.out), a, {c.encoding});
    const Audio b = audio::read(path(c.out));
    EXPECT_EQ(b.sample_rate, a.sample_rate) << c.out;
    EXPECT_EQ(b.channels, a.channels) << c.out;
    EXPECT_EQ(b.samples, a.samples) << c.out;
  }
  // sox reads our WAV as we wrote it: its own decode of the source.
  EXPECT_TRUE(samples_close(audio::read(path("a.wav")).samples, raw_f32("audio_tone_s16.f32"), 0.0));
  EXPECT_EQ(files_in_dir(), (std::vector<std::string>{"a.wav", "b.wav", "c.wav", "d.flac", "e.flac"}));  // no temp files left
}

TEST_F(AudioFiles, IntegerWritesRoundToTheNearestLevelAndClip) {
  Audio a = random_audio(16000, 1, 1000, 7);
  a.samples[0] = 1.5f, a.samples[1] = -1.5f;
  audio::write(path("x.wav"), a);
  const Audio b = audio::read(path("x.wav"));
  EXPECT_FLOAT_EQ(b.samples[0], 32767.0f / 32768);
  EXPECT_FLOAT_EQ(b.samples[1], -1.0f);
  a.samples[0] = b.samples[0], a.samples[1] = b.samples[1];
  EXPECT_TRUE(samples_close(b.samples, a.samples, 0.5 / 32768 + 1e-9));
}

TEST_F(AudioFiles, Mp3RoundTripKeepsRateDurationAndTone) {
  const Audio a = audio::read(fixture("audio_tone_s16.wav"));
  audio::write(path("x.mp3"), a);
  const Audio b = audio::read(path("x.mp3"));
  EXPECT_EQ(b.sample_rate, 22050);
  EXPECT_EQ(b.channels, 2);
  EXPECT_EQ(b.frames(), a.frames());  // the Xing/LAME header lets the reader drop the padding
  EXPECT_GT(snr_db(b.samples, a.samples), 20.0);
  EXPECT_EQ(files_in_dir(), std::vector<std::string>{"x.mp3"});
}

TEST_F(AudioFiles, WriteRefusesWhatItCannotStore) {
  Audio a = random_audio(22050, 2, 100, 1);
  test::expect_error([&] { audio::write(path("x.ogg"), a); }, "unknown extension '.ogg'");
  test::expect_error([&] { audio::write(path("x.flac"), a, {audio::Encoding::f32}); }, "FLAC stores integers");
  a.sample_rate = 0;
  test::expect_error([&] { audio::write(path("x.wav"), a); }, "x.wav: sample rate 0 Hz outside");
  a.sample_rate = 10000000;
  test::expect_error([&] { audio::write(path("x.wav"), a); }, "sample rate 10000000 Hz outside");
  a.sample_rate = 96000;
  test::expect_error([&] { audio::write(path("x.mp3"), a); }, "MP3 cannot store 96000 Hz");
  a.sample_rate = 22050;
  a.samples[3] = NAN;
  test::expect_error([&] { audio::write(path("x.wav"), a); }, "sample 3 is NaN");
  a.samples.clear();
  test::expect_error([&] { audio::write(path("x.wav"), a); }, "no samples");
  EXPECT_TRUE(files_in_dir().empty());
}

// sox's `rate -v` and libswresample's default sinc are different filters, so
// their samples differ by the filters' ripple and phase response; both must
// keep a 1 kHz tone (far below either cut-off): its amplitude within 0.1%, and
// away from the edges the waveforms agree to 40 dB.
TEST(AudioResample, MatchesSoxOnATone) {
  const Audio in = audio::read(fixture("audio_tone44k.wav"));
  const Audio out = audio::resample(in, 16000);
  const std::vector<float> sox = raw_f32("audio_tone44k_to16k.f32");
  EXPECT_EQ(out.sample_rate, 16000);
  ASSERT_EQ(out.samples.size(), sox.size());  // ceil(8820 * 16000 / 44100) = 3200
  Audio ref = out;
  ref.samples = sox;
  EXPECT_NEAR(tone_amplitude(out, 0, 1000, 64), tone_amplitude(ref, 0, 1000, 64), 5e-4);
  EXPECT_NEAR(tone_amplitude(out, 0, 1000, 64), 0.5, 2e-3);
  const std::vector<float> mid(out.samples.begin() + 64, out.samples.end() - 64), sox_mid(sox.begin() + 64, sox.end() - 64);
  EXPECT_GT(snr_db(mid, sox_mid), 40.0);
}

TEST(AudioResample, RatesAndLengths) {
  const Audio a = random_audio(44100, 2, 4410, 3);
  EXPECT_EQ(audio::resample(a, 44100).samples, a.samples);
  const Audio up = audio::resample(a, 48000);
  EXPECT_EQ(up.frames(), 4800);
  EXPECT_EQ(up.channels, 2);
  EXPECT_EQ(audio::resample(a, 8001).frames(), (4410 * 8001 + 44099) / 44100);
  test::expect_error([&] { audio::resample(a, 0); }, "sample rate 0 Hz outside");
  test::expect_error([&] { audio::resample(a, 10000000); }, "sample rate 10000000 Hz outside");
  Audio bad = a;
  bad.sample_rate = 0;
  test::expect_error([&] { audio::resample(bad, 16000); }, "audio resample: sample rate 0 Hz");
}

TEST(AudioChannels, MonoIsTheMeanAndStereoCopies) {
  const Audio a = audio::read(fixture("audio_tone_s16.wav"));
  const Audio m = audio::to_mono(a);
  ASSERT_EQ(m.channels, 1);
  ASSERT_EQ(m.frames(), a.frames());
  for (int64_t t = 0; t < a.frames(); ++t)
    ASSERT_FLOAT_EQ(m.samples[size_t(t)], (a.samples[size_t(2 * t)] + a.samples[size_t(2 * t + 1)]) / 2);
  const Audio s = audio::mix(m, 2);
  ASSERT_EQ(s.channels, 2);
  for (int64_t t = 0; t < a.frames(); ++t) {
    ASSERT_EQ(s.samples[size_t(2 * t)], m.samples[size_t(t)]);
    ASSERT_EQ(s.samples[size_t(2 * t + 1)], m.samples[size_t(t)]);
  }
  EXPECT_EQ(audio::mix(a, 2).samples, a.samples);
  test::expect_error([&] { audio::mix(a, 3); }, "2 channels to 3");
  test::expect_error([&] { audio::mix(a, 0); }, "0 channels");
}

TEST(AudioTensor, ChannelsFirstAndBack) {
  const Audio a = random_audio(16000, 2, 50, 5);
  const Tensor t = audio::to_tensor(a);
  ASSERT_EQ(t.shape(), (Shape{2, 50}));
  const std::vector<float> v = t.to_vector<float>();
  for (int64_t i = 0; i < 50; ++i) {
    EXPECT_EQ(v[size_t(i)], a.samples[size_t(2 * i)]);
    EXPECT_EQ(v[size_t(50 + i)], a.samples[size_t(2 * i + 1)]);
  }
  const Audio b = audio::from_tensor(t, 16000);
  EXPECT_EQ(b.samples, a.samples);
  EXPECT_EQ(b.channels, 2);
  const Audio mono = audio::from_tensor(fm::tensor(std::vector<double>{0.25, -0.5, 1.0}), 8000);
  EXPECT_EQ(mono.channels, 1);
  EXPECT_EQ(mono.samples, (std::vector<float>{0.25f, -0.5f, 1.0f}));
  test::expect_error([&] { audio::from_tensor(fm::tensor(std::vector<int32_t>{1, 2}), 8000); }, "floating");
  test::expect_error([&] { audio::from_tensor(t, 0); }, "sample rate 0 Hz");
}

}  // namespace
