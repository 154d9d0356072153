// Text-to-music with a trained music run, using libfm as a library: the run's
// Transformer, its codec run and tokenizer, classifier-free guidance and
// top-k sampling with a KV cache, the codes decoded to a waveform and written
// as WAV, FLAC or MP3 (as `fm generate music` does).
//
//   build/bin/musicgen --run runs/music_melodies --seconds 4 --out x.wav \
//       "a fast melody in G major played on a square wave, high register"
#include <cstdio>
#include <string>

#include "fm/audio/audio.h"
#include "fm/fm.h"
#include "fm/tasks/music.h"

int main(int argc, char** argv) {
  std::string run, out = "musicgen.wav", prompt;
  double seconds = 4.0;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help") {
      std::printf("usage: musicgen --run RUN_DIR [--seconds S] [--seed N] [--out x.wav] PROMPT\n");
      return 0;
    }
    if ((a == "--run" || a == "--seconds" || a == "--seed" || a == "--out") && i + 1 < argc) {
      const std::string v = argv[++i];
      if (a == "--run") run = v;
      else if (a == "--seconds") seconds = std::stod(v);
      else if (a == "--seed") seed = std::stoull(v);
      else out = v;
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "musicgen: unknown argument '%s' (try --help)\n", a.c_str());
      return 1;
    } else {
      prompt = a;
    }
  }
  try {
    if (run.empty() || prompt.empty()) fm::error("need --run and a prompt (try --help)");
    const fm::tasks::MusicRun r = fm::tasks::load_music_run(run);
    fm::Generator gen(seed);
    const fm::Tensor wave = r.generate({prompt}, seconds, gen).at(0);
    fm::audio::write(out, fm::audio::from_tensor(fm::clamp(wave, -1.0, 1.0), int(r.codec->options.sample_rate)));
    std::printf("%s: %.2f s\n", out.c_str(), double(wave.size(0)) / double(r.codec->options.sample_rate));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "musicgen: %s\n", e.what());
    return 1;
  }
}
