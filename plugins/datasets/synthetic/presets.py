"""Named presets per role (voice, drum kit, groove, bass, chord instrument, room) and the styles that draw from them.

A style is a set of presets per role: a song draws one voice, kit, groove,
bass, room and one or two chord instruments from its style's sets (a role with
one preset draws nothing, so a style's random stream depends only on its own
sets). The ``source`` / ``sound`` / ``tone`` fields name synthesis methods of
``songs.py``. Pure data: this module imports nothing of the package.

``alt`` is the unseen style: none of its voice, kit, bass or chord-instrument
presets (by name or by parameters) appears in ``default`` or ``varied``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Voice:
    """A singer: range, vocal tract, glottal source, vibrato and articulation."""

    name: str
    center: tuple[int, int]  # the melody's centre note (MIDI), drawn from [low, high)
    vowels: str  # "male" | "female": the Peterson & Barney formant table and bandwidths
    formant_scale: float  # multiplies the formant table (shorter vocal tract: higher)
    source: str  # glottal source: "saw", "rosenberg" or "tilted_saw"
    breath: tuple[float, float]  # aspiration noise level
    vibrato_rate: tuple[float, float]  # Hz
    vibrato_depth: tuple[float, float]  # semitones, half peak-to-peak
    vibrato_delay: tuple[float, float]  # seconds after each onset
    consonants: float = 0.35  # chance of a consonant before a syllable
    fricatives: float = 0.22  # consonants drawn below this are fricatives, the rest plosives
    harmony: str = ""  # a second singer: "" none, "double" the melody (double-tracked), "third" a third above


@dataclass(frozen=True)
class Kit:
    """Drum sounds per role, each named by its generator."""

    name: str
    sounds: tuple[tuple[str, str], ...]  # (role, sound): roles kick, snare, hat, open and optionally tom


@dataclass(frozen=True)
class Bass:
    name: str
    tone: str  # "plucked", "synth", "sub" or "picked"
    patterns: tuple[tuple[int, ...], ...]  # 16th steps per bar
    sustain: float  # fraction of the time to the next note that a note holds


@dataclass(frozen=True)
class Instrument:
    """A chord instrument; ``tone`` names its note synthesis."""

    name: str
    tone: str
    rhythms: tuple[tuple[int, ...], ...] | None  # 16th steps per chord; None: one sustained note per chord
    voices: int | tuple[int, int]  # notes per chord, or the range [low, high) they are drawn from
    low: int = 50  # lowest MIDI note of a voicing
    legato: float = 0.85  # fraction of the time to the next hit that a note holds
    strum: bool = False  # notes of a chord start a few milliseconds apart
    arpeggio: bool = False  # one chord tone per hit instead of the whole chord


@dataclass(frozen=True)
class Room:
    name: str
    rt60: tuple[float, float]  # seconds, drawn
    scale: float = 1.0  # multiplies the drawn rt60
    longest: float = 1.5  # the impulse response is cut after this many seconds
    wet: float = 1.0  # multiplies each stem's drawn reverb send


@dataclass(frozen=True)
class Groove:
    name: str
    steps: tuple[tuple[str, tuple[int, ...]], ...]  # (role, 16th steps per bar) for kick, snare, hat, open


@dataclass(frozen=True)
class Style:
    """The presets a song draws from, one tuple per role (a role with one preset draws nothing)."""

    name: str
    tempo: tuple[float, float]  # BPM
    modes: tuple[tuple[str, float], ...]  # (mode, probability), in the order one uniform draw picks them
    voices: tuple[Voice, ...]
    kits: tuple[Kit, ...]
    grooves: tuple[Groove, ...]
    swing: tuple[float, float] | None  # delay of off 16ths, fraction of a 16th; None: straight
    jitter: float  # standard deviation of drum timing, seconds
    basses: tuple[Bass, ...]
    instruments: tuple[Instrument, ...]
    rooms: tuple[Room, ...]


VOICES = {v.name: v for v in [
    Voice("baritone", (50, 58), "male", 1.0, "saw", (0.03, 0.1), (4.8, 6.2), (0.3, 0.7), (0.15, 0.35)),
    Voice("mezzo_pulse", (62, 70), "female", 1.0, "rosenberg", (0.15, 0.3), (6.0, 7.5), (0.15, 0.35), (0.05, 0.15)),
    Voice("bass_baritone", (45, 52), "male", 0.92, "saw", (0.02, 0.08), (4.5, 5.5), (0.35, 0.8), (0.2, 0.4),
          consonants=0.3),
    Voice("tenor", (54, 62), "male", 1.04, "tilted_saw", (0.04, 0.12), (5.2, 6.5), (0.25, 0.6), (0.1, 0.3),
          consonants=0.45, fricatives=0.3),
    Voice("breathy_tenor", (52, 60), "male", 1.02, "tilted_saw", (0.2, 0.4), (4.5, 5.5), (0.05, 0.2), (0.3, 0.6),
          consonants=0.5, fricatives=0.35, harmony="double"),
    Voice("alto", (60, 67), "female", 0.95, "saw", (0.06, 0.16), (5.0, 6.2), (0.2, 0.5), (0.1, 0.3), consonants=0.3,
          harmony="third"),
    Voice("soprano", (67, 75), "female", 1.06, "tilted_saw", (0.08, 0.2), (5.5, 6.8), (0.3, 0.6), (0.2, 0.45),
          consonants=0.25, fricatives=0.15),
]}

KITS = {k.name: k for k in [
    Kit("acoustic", (("kick", "sine_kick"), ("snare", "tone_snare"), ("hat", "noise_hat"), ("open", "noise_open_hat"))),
    Kit("808", (("kick", "808_kick"), ("snare", "clap"), ("hat", "metal_hat"), ("open", "shaker"))),
    Kit("rock", (("kick", "beater_kick"), ("snare", "rim_snare"), ("hat", "noise_hat"), ("open", "crash"), ("tom", "tom"))),
    Kit("brushes", (("kick", "felt_kick"), ("snare", "brush"), ("hat", "ride"), ("open", "pedal_hat"))),
]}

# 16th-note step patterns per bar: kick, snare, hat, open (open hat, shaker, crash or pedal hat, by kit)
_GROOVES = {
    "backbeat": dict(kick=[0, 8], snare=[4, 12], hat=list(range(0, 16, 2)), open=[]),
    "sixteenths": dict(kick=[0, 6, 8], snare=[4, 12], hat=list(range(16)), open=[14]),
    "halftime_open": dict(kick=[0, 10], snare=[8], hat=list(range(0, 16, 2)), open=[6]),
    "syncopated": dict(kick=[0, 7, 8, 14], snare=[4, 12], hat=list(range(0, 16, 2)), open=[]),
    "four_floor_shaker": dict(kick=[0, 4, 8, 12], snare=[4, 12], hat=[2, 6, 10, 14], open=list(range(16))),
    "trap_halftime": dict(kick=[0, 7, 10], snare=[8], hat=list(range(16)), open=[]),
    "dembow": dict(kick=[0, 3, 10], snare=[4, 12], hat=list(range(0, 16, 2)), open=[1, 5, 9, 13]),
    "ride_swing": dict(kick=[0, 10], snare=[7, 15], hat=[0, 4, 7, 8, 12, 15], open=[4, 12]),
    "train": dict(kick=[0, 8, 10], snare=[4, 12], hat=[0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15], open=[]),
    "half_time_rock": dict(kick=[0, 3, 11], snare=[8], hat=list(range(0, 16, 4)), open=[0]),
    "offbeat_open": dict(kick=[0, 6, 10], snare=[4, 12], hat=list(range(0, 16, 2)), open=[2, 6, 10, 14]),
}
GROOVES = {name: Groove(name, tuple((role, tuple(steps)) for role, steps in roles.items()))
           for name, roles in _GROOVES.items()}

_ROOTS = ((0, 4, 8, 12), (0, 2, 4, 6, 8, 10, 12, 14), (0, 6, 8, 14), (0, 3, 6, 8, 11, 14))
BASSES = {b.name: b for b in [
    Bass("plucked", "plucked", _ROOTS, 0.9),
    Bass("synth", "synth", ((0, 2, 4, 6, 8, 10, 12, 14), (0, 3, 6, 10, 12), (2, 6, 10, 14), (0, 7, 10)), 0.6),
    Bass("sub", "sub", ((0, 8), (0, 6, 8), (0, 4, 8, 12), (0, 10)), 0.95),
    Bass("picked", "picked", _ROOTS + ((0, 2, 3, 6, 8, 10, 11, 14),), 0.7),
]}

_COMPING = ((0, 6, 8, 14), (0, 4, 8, 12), (0, 3, 6, 10, 12), (0, 8))
INSTRUMENTS = {i.name: i for i in [
    Instrument("piano", "piano", _COMPING, (3, 5)),
    Instrument("guitar", "guitar", _COMPING, 5, low=45, strum=True),
    Instrument("pad", "pad", None, (3, 5), legato=0.95),
    Instrument("fm_pad", "fm_pad", None, (3, 5), legato=0.95),
    Instrument("fm_ep", "fm_ep", (tuple(range(0, 16, 2)), tuple(range(16))), (3, 5), arpeggio=True),
    Instrument("organ", "organ", None, (3, 5), legato=0.95),
    Instrument("strings", "bowed", None, (3, 5), low=48, legato=0.97),
    Instrument("brass", "brass", ((0, 8), (0, 6, 8), (0, 4, 8, 12), (0, 3, 8)), (3, 5), low=48, legato=0.8),
    Instrument("pluck", "karplus_strong", (tuple(range(0, 16, 2)), (0, 3, 6, 8, 11, 14)), (3, 5), arpeggio=True),
    Instrument("mallets", "mallet", ((0, 8), (0, 4, 8, 12), (0, 3, 6, 10, 12)), (3, 5), low=52),
]}

ROOMS = {r.name: r for r in [
    Room("medium", (0.5, 1.6)),
    Room("tight", (0.5, 1.6), scale=0.7),
    Room("dry", (0.15, 0.4), wet=0.5),
    Room("hall", (1.6, 2.8), longest=2.5, wet=1.3),
]}



def _of(table: dict, *names: str) -> tuple:
    return tuple(table[name] for name in names)


_MAJOR_MINOR = (("minor", 0.45), ("major", 0.55))
_DEFAULT = Style("default", (78, 140), _MAJOR_MINOR, _of(VOICES, "baritone"), _of(KITS, "acoustic"),
                 _of(GROOVES, "backbeat", "sixteenths", "halftime_open", "syncopated"), (0.0, 0.12), 0.004,
                 _of(BASSES, "plucked"), _of(INSTRUMENTS, "piano", "guitar", "pad"), _of(ROOMS, "medium"))
STYLES = {s.name: s for s in [
    _DEFAULT,
    Style("alt", (96, 150), _MAJOR_MINOR, _of(VOICES, "mezzo_pulse"), _of(KITS, "808"),
          _of(GROOVES, "four_floor_shaker", "trap_halftime", "dembow"), None, 0.0, _of(BASSES, "synth"),
          _of(INSTRUMENTS, "fm_pad", "fm_ep", "organ"), _of(ROOMS, "tight")),
    Style("varied", (65, 170), (("minor", 0.3), ("major", 0.4), ("dorian", 0.15), ("mixolydian", 0.15)),
          _DEFAULT.voices + _of(VOICES, "bass_baritone", "tenor", "breathy_tenor", "alto", "soprano"),
          _DEFAULT.kits + _of(KITS, "rock", "brushes"),
          _DEFAULT.grooves + _of(GROOVES, "ride_swing", "train", "half_time_rock", "offbeat_open"), (0.0, 0.2), 0.006,
          _DEFAULT.basses + _of(BASSES, "sub", "picked"),
          _DEFAULT.instruments + _of(INSTRUMENTS, "strings", "brass", "pluck", "mallets"),
          _of(ROOMS, "dry") + _DEFAULT.rooms + _of(ROOMS, "hall")),
]}
