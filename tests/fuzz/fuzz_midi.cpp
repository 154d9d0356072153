// parse_midi on arbitrary bytes, then the caption of the whole file and of
// its first seconds (tempo map, key estimate, instrument words).
#include <cstdint>

#include "fm/data/midi.h"
#include "fm/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const fm::data::MidiFile midi = fm::data::parse_midi(data, size, "fuzz.mid");
    const double end = midi.duration > 0 ? midi.duration : 1.0;
    const fm::data::MidiClipCaption whole = fm::data::midi_caption(midi, 0, end);
    const fm::data::MidiClipCaption start = fm::data::midi_caption(midi, 0, end < 2 ? end : 2);
    volatile size_t sink = whole.text.size() + start.text.size() + 0;
    volatile double tick = midi.tick_at(end / 2);
    (void)tick;
    (void)sink;
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}
