"""One synthetic song: four music-like stereo stems that sum to the mixture.

Each song is drawn from a ``numpy.random.Generator`` and a style, a set of
named presets per role (``presets.py``): a key, mode, tempo and chord
progression, a room, then per stem a preset with its own timbre, loudness
ratios and panning. Styles:

- ``default`` (what the quickstart trains and tests on): a baritone with a
  sawtooth source, an acoustic kit, a plucked bass, piano / strummed guitar /
  detuned pad, a medium room; major or minor, 78-140 BPM;
- ``alt`` (the unseen style, for evaluation on material unlike the training
  songs): a mezzo with a Rosenberg-pulse source, an 808 kit (kick, clap,
  metallic hats, shaker), a square/saw synth bass, FM pads / FM electric-piano
  arpeggios / drawbar organ, a tighter room; 96-150 BPM;
- ``varied`` (broader training material): ``default``'s presets plus
  bass-baritone, tenor, breathy tenor, alto and soprano voices (sawtooth or
  spectrally tilted sources, scaled formants, their own vibrato and consonant
  rates; one double-tracked, one with a harmony a third above), a rock kit with toms and crash and a brushed kit with ride, more
  grooves, sub and picked basses, bowed strings, brass, Karplus-Strong plucks
  and mallets, dry to large rooms; major, minor, dorian or mixolydian,
  65-170 BPM. It shares no voice, kit, bass or chord instrument with ``alt``.

Synthesis per stem:

- vocals: source-filter voice (Fant's model): a band-limited glottal source
  (PolyBLEP sawtooth, Välimäki & Huovilainen 2007; the derivative of a
  Rosenberg 1971 pulse; or a sawtooth with the extra spectral tilt of Klatt &
  Klatt 1990) plus aspiration noise, shaped by 5 cascaded formant resonators
  (Klatt 1980) per vowel (Peterson & Barney 1952 tables, scaled per voice)
  whose targets change per syllable, with glides, delayed vibrato, pitch
  drift, syllable envelopes, fricative/plosive onsets, phrase gaps and a
  melody in the key that lands on chord tones;
- drums: one-shot sounds on a 16th grid at the tempo: pitch-swept sine kicks,
  snares of band-passed noise with tones or clap bursts, hats of high-passed
  noise or square-wave clusters, a ride of inharmonic partials, brush swishes;
- bass: decaying harmonic notes on the chord roots (plucked, picked, sub,
  square/saw synth);
- other: chords as piano-like, strummed or detuned-pad harmonic voices, FM
  pads and electric piano (Chowning 1973), drawbar organ, bowed strings
  (detuned sawtooth ensemble), brass whose brightness follows its loudness
  (Risset & Mathews 1969), Karplus-Strong plucks (Karplus & Strong 1983, tuned
  as Jaffe & Smith 1983) and struck bars (mode ratios from Fletcher & Rossing
  1998), overlapping the vocal range.

The vocal-to-accompaniment ratio is drawn in decibels from [-3, 3]; all stems are scaled
by one factor so that nothing clips. This module takes its presets as
arguments (``render(rng, seconds, sample_rate, style)`` with a
``presets.Style``); the package's ``render_track`` names the style.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from toolkit.data import STEMS


def render(rng: np.random.Generator, seconds: float, sample_rate: int, style) -> dict[str, np.ndarray]:
    """One synthetic song in ``style`` (a ``presets.Style``): ``{stem: (samples, 2) float32}`` for every name in ``STEMS``.

    ``mixture`` is the float32 sum ``((drums + bass) + other) + vocals``.
    """
    song = _plan_song(rng, seconds, sample_rate, style)
    room = _pick(rng, style.rooms)
    ir = _reverb_ir(rng, sample_rate, rng.uniform(*room.rt60), room.scale, room.longest)
    drums = _unit_rms(_drums(rng, song, style, ir, room))
    bass = _unit_rms(_bass(rng, song, style))
    other = _unit_rms(_other(rng, song, style, ir, room))
    vocals = _unit_rms(_vocals(rng, song, style, ir, room))
    # accompaniment balance per source, then the vocals against the accompaniment sum (gains in decibels)
    gains = 10.0 ** (rng.uniform(-4.0, 2.0, size=3) / 20.0)
    drums, bass, other = drums * gains[0], bass * gains[1], other * gains[2]
    accompaniment_rms = _rms(drums + bass + other)
    vocals = vocals * accompaniment_rms * 10.0 ** (rng.uniform(-3.0, 3.0) / 20.0)
    stems = {"drums": drums, "bass": bass, "other": other, "vocals": vocals}
    peak = max(np.max(np.abs(drums + bass + other + vocals)), *(np.max(np.abs(s)) for s in stems.values()))
    scale = rng.uniform(0.5, 0.95) / max(peak, 1e-9)
    out = {name: (s * scale).astype(np.float32) for name, s in stems.items()}
    out["mixture"] = ((out["drums"] + out["bass"]) + out["other"]) + out["vocals"]
    return {name: out[name] for name in STEMS}


def _pick(rng, presets: tuple):
    """One of ``presets``, drawn uniformly; a single preset draws nothing from ``rng``."""
    return presets[0] if len(presets) == 1 else presets[rng.integers(len(presets))]


# ---------------------------------------------------------------- song plan

_SCALES = {  # semitones above the tonic
    "major": np.array([0, 2, 4, 5, 7, 9, 11]),
    "minor": np.array([0, 2, 3, 5, 7, 8, 10]),
    "dorian": np.array([0, 2, 3, 5, 7, 9, 10]),
    "mixolydian": np.array([0, 2, 4, 5, 7, 9, 10]),
}
# chord progressions as scale degrees (0 = tonic); the modal scales borrow those of the nearest of major / minor
_PROGRESSIONS = {
    "major": [(0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (1, 4, 0, 5), (0, 2, 3, 4)],
    "minor": [(0, 5, 2, 6), (0, 3, 6, 2), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 4, 0)],
}
_FAMILY = {"major": "major", "mixolydian": "major", "minor": "minor", "dorian": "minor"}


@dataclass
class _Song:
    sr: int
    n: int  # samples
    beat: float  # seconds per beat
    key: int  # tonic pitch class
    scale: np.ndarray  # (7,) semitones above the tonic
    chord_starts: np.ndarray  # (chords,) seconds
    chord_degrees: np.ndarray  # (chords,) scale degree of each chord's root

    @property
    def seconds(self) -> float:
        return self.n / self.sr

    def chord_index(self, t: float) -> int:
        return int(np.searchsorted(self.chord_starts, t + 1e-9, side="right") - 1)

    def chord_pcs(self, index: int) -> np.ndarray:
        """(3,) pitch classes of a chord, root first."""
        degree = self.chord_degrees[index]
        return (self.key + self.scale[(degree + np.array([0, 2, 4])) % 7]) % 12

    def in_key(self, low: int, high: int) -> np.ndarray:
        """MIDI notes of the key's scale within [low, high]."""
        pcs = set(((self.key + self.scale) % 12).tolist())
        return np.array([m for m in range(low, high + 1) if m % 12 in pcs])


def _plan_song(rng, seconds: float, sr: int, style) -> _Song:
    tempo = rng.uniform(*style.tempo)
    beat = 60.0 / tempo
    mode = _draw_mode(rng, style.modes)
    progressions = _PROGRESSIONS[_FAMILY[mode]]
    progression = progressions[rng.integers(len(progressions))]
    beats_per_chord = int(rng.choice([2, 4, 4, 4]))
    count = int(np.ceil(seconds / (beat * beats_per_chord))) + 1
    starts = np.arange(count) * beat * beats_per_chord
    degrees = np.array([progression[i % len(progression)] for i in range(count)])
    return _Song(sr=sr, n=int(round(seconds * sr)), beat=beat, key=int(rng.integers(12)),
                 scale=_SCALES[mode], chord_starts=starts, chord_degrees=degrees)


def _draw_mode(rng, modes: tuple[tuple[str, float], ...]) -> str:
    """One uniform draw against the modes' cumulative probabilities."""
    u, total = rng.random(), 0.0
    for mode, probability in modes:
        total += probability
        if u < total:
            return mode
    return modes[-1][0]


# ---------------------------------------------------------------- DSP helpers

def _hz(midi):
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-20))


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / _rms(x)


def _pan(pan: float) -> tuple[float, float]:
    """Constant-power gains (left, right) for pan in [-1, 1]."""
    theta = (np.clip(pan, -1, 1) + 1.0) * np.pi / 4.0
    return float(np.cos(theta)), float(np.sin(theta))


def _place(out: np.ndarray, start_s: float, sound: np.ndarray, gain: float = 1.0, pan: float = 0.0, sr: int = 44100) -> None:
    """Add a mono ``sound`` into ``out: (samples, 2)`` at ``start_s`` seconds, clipped to the track."""
    start = int(round(start_s * sr))
    if start >= len(out) or start + len(sound) <= 0:
        return
    skip = max(0, -start)
    start = max(0, start)
    stop = min(len(out), start + len(sound) - skip)
    piece = sound[skip:skip + stop - start] * gain
    left, right = _pan(pan)
    out[start:stop, 0] += left * piece
    out[start:stop, 1] += right * piece


def _filter(x: np.ndarray, sr: int, low: float | None = None, high: float | None = None, order: int = 2) -> np.ndarray:
    """Butterworth high-pass (``low``), low-pass (``high``) or band-pass (both); cutoffs clipped below Nyquist."""
    nyquist = sr / 2.0
    low = None if low is None else min(max(low, 10.0), 0.9 * nyquist)
    high = None if high is None else min(max(high, 20.0), 0.95 * nyquist)
    if low is not None and high is not None and high > low * 1.05:
        sos = signal.butter(order, [low, high], btype="bandpass", fs=sr, output="sos")
    elif low is not None:
        sos = signal.butter(order, low, btype="highpass", fs=sr, output="sos")
    elif high is not None:
        sos = signal.butter(order, high, btype="lowpass", fs=sr, output="sos")
    else:
        return x
    return signal.sosfilt(sos, x, axis=-1)


def _polyblep(t: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Band-limiting residual of a unit step at phase 0 (Välimäki & Huovilainen 2007)."""
    out = np.zeros_like(t)
    head = t < dt
    x = t[head] / dt[head]
    out[head] = 2 * x - x * x - 1
    tail = t > 1 - dt
    x = (t[tail] - 1) / dt[tail]
    out[tail] = x * x + 2 * x + 1
    return out


def _phase(freq: np.ndarray, sr: int, start: float = 0.0) -> np.ndarray:
    """Cycles (fractional phase in [0, 1)) of an oscillator following ``freq: (samples,)`` Hz."""
    return (start + np.cumsum(freq / sr)) % 1.0


def _saw(freq: np.ndarray, sr: int, start: float = 0.0) -> np.ndarray:
    t = _phase(freq, sr, start)
    return 2 * t - 1 - _polyblep(t, freq / sr)


def _harmonic_tone(f0: float, length: int, sr: int, coeffs: np.ndarray, decay: float, brightness_decay: float,
                   attack: float, hold: float, release: float, fmax: float = 6000.0) -> np.ndarray:
    """A decaying harmonic note: ``sum_k c_k e^{-(decay + (k-1) brightness_decay) t} sin(2 pi k f0 t)``.

    Higher partials die faster (plucked/struck strings). Evaluated by Horner's rule on
    complex exponentials, so the cost is one complex multiply-add per partial.
    Returns ``(length,)``; the note is held ``hold`` s and released over ``release`` s.
    """
    t = np.arange(length) / sr
    k_max = int(min(fmax, 0.45 * sr) // f0)
    coeffs = np.asarray(coeffs[:max(k_max, 1)], dtype=np.complex64)
    z = np.exp(2j * np.pi * f0 * t).astype(np.complex64)
    w = z * np.exp(-brightness_decay * t).astype(np.complex64)
    poly = np.full(length, coeffs[-1], dtype=np.complex64)
    for c in coeffs[-2::-1]:
        poly = poly * w + c
    y = np.imag(z * poly).astype(np.float64) * np.exp(-decay * t)
    return y * _envelope(t, attack, hold, release)


def _envelope(t: np.ndarray, attack: float, hold: float, release: float) -> np.ndarray:
    """Linear attack, hold until ``hold`` s, then a linear release to zero."""
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.clip(1.0 - (t - hold) / max(release, 1e-4), 0.0, 1.0)


def _fm_tone(f0: float, length: int, sr: int, ratio: float, index0: float, index1: float, index_tau: float,
             attack: float, hold: float, release: float, decay: float = 0.0) -> np.ndarray:
    """Two-operator FM (Chowning 1973): ``sin(2 pi f0 t + I(t) sin(2 pi ratio f0 t))``, ``I`` gliding index0 -> index1."""
    t = np.arange(length) / sr
    index = index1 + (index0 - index1) * np.exp(-t / index_tau)
    # keep Carson's bandwidth under Nyquist
    index = np.minimum(index, max(0.0, 0.45 * sr / (ratio * f0) - 1.0))
    y = np.sin(2 * np.pi * f0 * t + index * np.sin(2 * np.pi * ratio * f0 * t))
    return y * np.exp(-decay * t) * _envelope(t, attack, hold, release)


def _reverb_ir(rng, sr: int, rt60: float, scale: float = 1.0, longest: float = 1.5) -> np.ndarray:
    """``(2, taps)`` decorrelated exponentially decaying noise, unit energy per channel.

    The decay time is ``rt60 * scale`` seconds; the response is cut after ``longest`` seconds.
    """
    rt60 = rt60 * scale
    taps = max(16, int(min(rt60, longest) * sr))
    t = np.arange(taps) / sr
    ir = rng.standard_normal((2, taps)) * np.exp(-6.91 * t / rt60)
    ir = _filter(ir, sr, high=rng.uniform(3000, 8000), order=1)
    predelay = int(rng.uniform(0.01, 0.03) * sr)
    ir = np.concatenate([np.zeros((2, predelay)), ir], axis=1)
    return ir / np.sqrt(np.sum(ir**2, axis=1, keepdims=True))


def _with_reverb(dry: np.ndarray, ir: np.ndarray, wet: float) -> np.ndarray:
    """``dry: (samples, 2)`` plus its reverb at relative energy ``wet``."""
    send = dry.mean(axis=1)
    tails = [signal.oaconvolve(send, ir[c])[: len(dry)] for c in range(2)]
    return dry + wet * np.stack(tails, axis=1)


def _place_mono(out: np.ndarray, start_s: float, sound: np.ndarray, sr: int) -> None:
    """Add ``sound`` into the mono ``out: (samples,)`` at ``start_s`` seconds, clipped to the track."""
    start = int(round(start_s * sr))
    skip = max(0, -start)
    start = max(0, start)
    stop = min(len(out), start + len(sound) - skip)
    if stop > start:
        out[start:stop] += sound[skip:skip + stop - start]


# ---------------------------------------------------------------- chord tones beyond harmonic and FM

def _karplus_strong_note(rng, f0: float, length: int, sr: int, loop_gain: float, brightness: float) -> np.ndarray:
    """A plucked string (Karplus & Strong 1983), tuned by a first-order allpass (Jaffe & Smith 1983).

    A burst of one period of low-passed noise circulates in the loop
    ``y[n] = x[n] + loop_gain * A(z) (y[n - L] + y[n - L - 1]) / 2``, where the
    two-point average damps high partials faster and the allpass ``A`` adds the
    fractional part of the period. ``brightness`` in (0, 1] sets the burst's
    low-pass cutoff as a fraction of Nyquist.
    """
    period = sr / f0 - 0.5  # the two-point average delays half a sample
    delay = int(np.floor(period))
    frac = period - delay
    if frac < 0.1:  # keep the allpass pole away from -1
        delay, frac = delay - 1, frac + 1.0
    c = (1.0 - frac) / (1.0 + frac)
    a = np.zeros(delay + 3)
    a[0], a[1] = 1.0, c
    a[delay:delay + 3] -= loop_gain / 2 * np.array([c, 1.0 + c, 1.0])
    burst = np.zeros(length)
    excitation = rng.standard_normal(min(delay, length))
    burst[:len(excitation)] = _filter(excitation, sr, high=brightness * sr / 2, order=1)
    return signal.lfilter([1.0, c], a, burst)


# mode frequencies of bars relative to the lowest (Fletcher & Rossing 1998): tuned marimba and vibraphone bars, a free bar
_BARS = {"marimba": (1.0, 3.99, 9.14), "vibraphone": (1.0, 4.0, 10.0), "glockenspiel": (1.0, 2.76, 5.40, 8.93)}


def _bar_note(f0: float, length: int, sr: int, ratios: tuple[float, ...], decay: float, hardness: float) -> np.ndarray:
    """A struck bar: inharmonic sine partials at ``ratios * f0``; partial ``k`` decays ``(1 + k)`` times faster.

    ``hardness`` in [0, 1]: the upper partials' level relative to the first (a harder mallet excites more of them).
    """
    t = np.arange(length) / sr
    y = np.zeros(length)
    for k, ratio in enumerate(ratios):
        if ratio * f0 < 0.45 * sr:
            level = 1.0 if k == 0 else hardness / k
            y += level * np.sin(2 * np.pi * ratio * f0 * t) * np.exp(-decay * (1 + k) * t)
    return y * np.minimum(1.0, t / 0.001)


def _brass_note(f0: float, length: int, sr: int, attack: float, hold: float, release: float, brightness: float,
                fmax: float = 7000.0) -> np.ndarray:
    """A brass-like note whose brightness follows its loudness (Risset & Mathews 1969).

    Partial ``k`` has amplitude ``(brightness * e(t)) ** (k - 1)`` for the envelope ``e(t)`` in [0, 1], so the
    spectrum opens during the attack and closes in the release. Evaluated by Horner's rule on complex exponentials.
    """
    t = np.arange(length) / sr
    env = _envelope(t, attack, hold, release)
    partials = max(1, int(min(fmax, 0.45 * sr) // f0))
    z = np.exp(2j * np.pi * f0 * t).astype(np.complex64)
    w = z * (brightness * env).astype(np.complex64)
    poly = np.ones(length, dtype=np.complex64)
    for _ in range(partials - 1):
        poly = poly * w + 1.0
    y = np.imag(z * poly).astype(np.float64)
    return y * env * np.sqrt(1.0 - brightness**2)  # unit energy of the partials at full loudness


def _bowed_note(rng, f0: float, length: int, sr: int, attack: float, hold: float, release: float, detune_cents: float,
                cutoff: float) -> np.ndarray:
    """A bowed-string section: three detuned band-limited saws with their own vibrato, low-passed, slow attack."""
    t = np.arange(length) / sr
    y = np.zeros(length)
    for cents in (-detune_cents, 0.0, detune_cents):
        vibrato = 1.0 + 0.003 * np.sin(2 * np.pi * rng.uniform(4.5, 6.0) * t + rng.uniform(0, 2 * np.pi))
        y += _saw(f0 * 2 ** (cents / 1200) * vibrato, sr, rng.uniform())
    return _filter(y / 1.5, sr, high=cutoff) * _envelope(t, attack, hold, release)


# ---------------------------------------------------------------- drums

def _seconds(x: float, sr: int) -> np.ndarray:
    return np.arange(int(x * sr)) / sr


def _swept_kick(sr, length, f_hi, f_lo, tau_f, decay) -> np.ndarray:
    t = _seconds(length, sr)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / tau_f)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / decay)


def _sine_kick(rng, sr):
    t = _seconds(0.5, sr)
    f_hi, f_lo, tau_f = rng.uniform(100, 170), rng.uniform(42, 62), rng.uniform(0.02, 0.05)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / tau_f)
    kick = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / rng.uniform(0.08, 0.2))
    click = _filter(rng.standard_normal(len(t)), sr, low=1500) * np.exp(-t / 0.003)
    return kick + 0.3 * click


def _tone_snare(rng, sr):
    t = _seconds(0.4, sr)
    tone = np.sin(2 * np.pi * rng.uniform(170, 240) * t) * np.exp(-t / rng.uniform(0.03, 0.07))
    noise = _filter(rng.standard_normal(len(t)), sr, low=rng.uniform(1200, 2500), high=rng.uniform(7000, 11000))
    return 0.6 * tone + noise * np.exp(-t / rng.uniform(0.06, 0.15)) * 1.5


def _noise_hat(rng, sr):
    t = _seconds(0.25, sr)
    hat = _filter(rng.standard_normal(len(t)), sr, low=rng.uniform(6500, 9000), order=4)
    return hat * np.exp(-t / rng.uniform(0.015, 0.04))


def _noise_open_hat(rng, sr):
    t = _seconds(1.2, sr)
    open_hat = _filter(rng.standard_normal(len(t)), sr, low=rng.uniform(5000, 7000), order=4)
    return open_hat * np.exp(-t / rng.uniform(0.2, 0.45))


def _kick_808(rng, sr):
    t = _seconds(0.9, sr)
    f_hi, f_lo = rng.uniform(60, 95), rng.uniform(36, 50)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / rng.uniform(0.04, 0.1))
    return np.tanh(1.5 * np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / rng.uniform(0.25, 0.55)))


def _clap(rng, sr):
    t = _seconds(0.35, sr)
    bursts = sum(np.exp(-np.maximum(t - d, 0) / 0.004) * (t >= d) for d in (0.0, 0.011, 0.022))
    tail = np.exp(-t / rng.uniform(0.05, 0.12)) * (t >= 0.03)
    return _filter(rng.standard_normal(len(t)), sr, low=700, high=rng.uniform(2500, 4000)) * (bursts + tail) * 2


def _metal_hat(rng, sr):
    t = _seconds(0.3, sr)
    partials = np.array([205.3, 304.4, 369.6, 522.7, 540.0, 800.0]) * rng.uniform(1.0, 1.35)
    metal = sum(np.sign(np.sin(2 * np.pi * f * t)) for f in partials)
    return _filter(metal, sr, low=7000, order=4) * np.exp(-t / rng.uniform(0.02, 0.05))


def _shaker(rng, sr):
    t = _seconds(0.12, sr)
    noise = _filter(rng.standard_normal(len(t)), sr, low=4500, high=10000)
    return noise * np.minimum(1, t / 0.01) * np.exp(-t / 0.03)


def _beater_kick(rng, sr):
    """A deep, long kick with a hard beater: low sweep plus a band-passed knock."""
    kick = _swept_kick(sr, 0.7, rng.uniform(80, 120), rng.uniform(38, 50), rng.uniform(0.03, 0.07),
                       rng.uniform(0.15, 0.3))
    t = _seconds(0.7, sr)
    knock = _filter(rng.standard_normal(len(t)), sr, low=2000, high=5000) * np.exp(-t / 0.006)
    return kick + rng.uniform(0.3, 0.6) * knock


def _rim_snare(rng, sr):
    """A loud snare: wide noise with a long tail, a tone pair and a rim click."""
    t = _seconds(0.5, sr)
    f = rng.uniform(180, 230)
    tone = (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 1.59 * f * t)) * np.exp(-t / rng.uniform(0.04, 0.08))
    noise = _filter(rng.standard_normal(len(t)), sr, low=rng.uniform(800, 1500), high=rng.uniform(8000, 12000))
    rim = np.sin(2 * np.pi * rng.uniform(1500, 2500) * t) * np.exp(-t / 0.004)
    return 0.7 * tone + 1.6 * noise * np.exp(-t / rng.uniform(0.12, 0.22)) + rim


def _crash(rng, sr):
    t = _seconds(1.6, sr)
    noise = _filter(rng.standard_normal(len(t)), sr, low=rng.uniform(3000, 5000), high=14000, order=2)
    return noise * np.minimum(1, t / 0.004) * np.exp(-t / rng.uniform(0.5, 0.9))


def _tom(rng, sr):
    return _swept_kick(sr, 0.6, rng.uniform(140, 220), rng.uniform(90, 130), rng.uniform(0.05, 0.1),
                       rng.uniform(0.12, 0.25))


def _felt_kick(rng, sr):
    """A short, round jazz kick: a higher sweep, no click."""
    return _swept_kick(sr, 0.35, rng.uniform(90, 130), rng.uniform(55, 75), rng.uniform(0.01, 0.03),
                       rng.uniform(0.05, 0.1))


def _brush(rng, sr):
    """A brush stroke: band-passed noise with a slow swell and a soft slap."""
    t = _seconds(0.3, sr)
    noise = _filter(rng.standard_normal(len(t)), sr, low=rng.uniform(1500, 2500), high=rng.uniform(5000, 8000))
    swell = np.sin(np.pi * np.minimum(t / 0.25, 1.0)) ** 2
    return noise * (swell + np.exp(-t / 0.01))


def _ride(rng, sr):
    """A ride cymbal: inharmonic sine partials with a ping, over a soft noise wash."""
    t = _seconds(1.2, sr)
    base = rng.uniform(380, 520)
    ratios = np.array([1.0, 1.47, 2.09, 2.56, 3.14, 4.07, 5.39, 6.91])
    ping = sum(np.sin(2 * np.pi * base * r * t + rng.uniform(0, 2 * np.pi)) for r in ratios) * np.exp(-t / 0.4)
    wash = _filter(rng.standard_normal(len(t)), sr, low=5000, order=2) * np.exp(-t / rng.uniform(0.3, 0.6))
    return _filter(ping, sr, low=2500) + 0.5 * wash


def _pedal_hat(rng, sr):
    t = _seconds(0.1, sr)
    noise = _filter(rng.standard_normal(len(t)), sr, low=rng.uniform(3000, 5000), high=9000)
    return noise * np.exp(-t / 0.015)


_SOUNDS = {"sine_kick": _sine_kick, "tone_snare": _tone_snare, "noise_hat": _noise_hat, "noise_open_hat": _noise_open_hat,
           "808_kick": _kick_808, "clap": _clap, "metal_hat": _metal_hat, "shaker": _shaker,
           "beater_kick": _beater_kick, "rim_snare": _rim_snare, "crash": _crash, "tom": _tom,
           "felt_kick": _felt_kick, "brush": _brush, "ride": _ride, "pedal_hat": _pedal_hat}


def _drum_kit(rng, sr: int, kit) -> dict[str, np.ndarray]:
    """``{role: (samples,)}``, each sound at unit peak."""
    sounds = {role: _SOUNDS[sound](rng, sr) for role, sound in kit.sounds}
    return {role: sound / np.max(np.abs(sound)) for role, sound in sounds.items()}


def _drums(rng, song: _Song, style, ir: np.ndarray, room) -> np.ndarray:
    """The drum stem ``(samples, 2)``."""
    sr = song.sr
    kit = _drum_kit(rng, sr, _pick(rng, style.kits))
    groove = dict(_pick(rng, style.grooves).steps)
    pans = {"kick": 0.0, "snare": rng.uniform(-0.15, 0.15), "hat": rng.uniform(-0.5, 0.5), "open": rng.uniform(-0.6, 0.6)}
    levels = {"kick": 1.0, "snare": rng.uniform(0.6, 1.0), "hat": rng.uniform(0.2, 0.45), "open": rng.uniform(0.15, 0.35)}
    if "tom" in kit:  # toms play the fills
        pans["tom"], levels["tom"] = rng.uniform(-0.5, 0.5), rng.uniform(0.6, 0.9)
        groove = {**groove, "tom": []}
    swing = rng.uniform(*style.swing) if style.swing else 0.0
    jitter = style.jitter
    out = np.zeros((song.n, 2))
    step = song.beat / 4
    bars = int(np.ceil(song.seconds / (4 * song.beat)))
    for bar in range(bars):
        fill = rng.random() < 0.25 and bar % 4 == 3
        for name, steps in groove.items():
            steps = list(steps)
            if name == "kick" and rng.random() < 0.3:
                steps.append(int(rng.integers(16)))
            if name == "snare" and fill:
                steps += [13, 14, 15]
            if name == "tom" and fill:
                steps += [8, 10, 11, 12]
            for s in sorted(set(steps)):
                t = (bar * 16 + s) * step + (swing * step if s % 2 else 0.0) + rng.normal(0, jitter)
                velocity = rng.uniform(0.75, 1.0) * (0.7 if name == "hat" and s % 4 else 1.0)
                _place(out, t, kit[name], levels[name] * velocity, pans[name], sr)
    return _with_reverb(out, ir, wet=rng.uniform(0.05, 0.2) * room.wet)


# ---------------------------------------------------------------- bass

_K = np.arange(1, 41)  # harmonic numbers of the bass and chord tones


def _plucked(rng):
    pluck = rng.uniform(0.1, 0.3)
    coeffs = _K ** -rng.uniform(1.0, 1.6) * np.abs(np.sin(np.pi * _K * pluck)) / np.sin(np.pi * pluck)
    return coeffs, rng.uniform(1.0, 3.0), rng.uniform(1.0, 4.0)


def _synth(rng):
    coeffs = np.where(_K % 2 == 1, 1.0 / _K, 0.0) if rng.random() < 0.6 else 1.0 / _K
    return coeffs, rng.uniform(0.2, 1.0), rng.uniform(4.0, 12.0)


def _sub(rng):
    coeffs = np.zeros(3)
    coeffs[0], coeffs[1], coeffs[2] = 1.0, rng.uniform(0.0, 0.2), rng.uniform(0.0, 0.05)
    return coeffs, rng.uniform(0.1, 0.6), 0.0


def _picked(rng):
    pluck = rng.uniform(0.04, 0.1)
    coeffs = _K ** -rng.uniform(0.7, 1.1) * np.abs(np.sin(np.pi * _K * pluck)) / np.sin(np.pi * pluck)
    return coeffs, rng.uniform(2.0, 4.5), rng.uniform(0.5, 2.0)


_BASS_TONES = {"plucked": _plucked, "synth": _synth, "sub": _sub, "picked": _picked}


def _bass(rng, song: _Song, style) -> np.ndarray:
    """The bass stem ``(samples, 2)``."""
    sr = song.sr
    preset = _pick(rng, style.basses)
    coeffs, decay, bright = _BASS_TONES[preset.tone](rng)
    steps = list(preset.patterns[rng.integers(len(preset.patterns))])
    pan = rng.uniform(-0.1, 0.1)
    out = np.zeros((song.n, 2))
    step = song.beat / 4
    bars = int(np.ceil(song.seconds / (4 * song.beat)))
    for i, s in enumerate(s_ for _ in range(bars) for s_ in steps):
        bar = i // len(steps)
        t = (bar * 16 + s) * step
        if t >= song.seconds:
            break
        root = int(song.chord_pcs(song.chord_index(t))[0])
        midi = 28 + (root - 4) % 12  # E1..D#2
        if rng.random() < 0.2:
            midi += int(rng.choice([7, 12]))  # fifth or octave
        following = (steps + [16])[steps.index(s) + 1] - s
        hold = following * step * preset.sustain
        length = int((hold + 0.06) * sr)
        note = _harmonic_tone(_hz(midi), length, sr, coeffs, decay, bright, attack=0.004, hold=hold, release=0.05, fmax=4000)
        _place(out, t, note, rng.uniform(0.8, 1.0), pan, sr)
    return out


# ---------------------------------------------------------------- other (chords)

def _voicing(pcs: np.ndarray, low: int, high: int, voices: int, previous: float) -> np.ndarray:
    """MIDI notes of a chord in [low, high]: ``voices`` notes nearest the previous voicing's centre."""
    candidates = np.array([m for m in range(low, high + 1) if m % 12 in set(pcs.tolist())])
    order = np.argsort(np.abs(candidates - previous), kind="stable")
    return np.sort(candidates[order[:voices]])


def _other(rng, song: _Song, style, ir: np.ndarray, room) -> np.ndarray:
    """The "other" stem ``(samples, 2)``."""
    layers = rng.choice(len(style.instruments), size=int(rng.integers(1, 3)), replace=False)
    out = np.zeros((song.n, 2))
    for j, index in enumerate(layers):
        layer = _chord_layer(rng, song, style.instruments[index])
        width = rng.uniform(0.2, 0.7)
        left, right = (1 + width) / 2, (1 - width) / 2
        if j % 2:
            left, right = right, left
        out += layer * np.array([left, right]) * rng.uniform(0.6, 1.0)
    return _with_reverb(out, ir, wet=rng.uniform(0.15, 0.45) * room.wet)


def _chord_layer(rng, song: _Song, instrument) -> np.ndarray:
    sr = song.sr
    step = song.beat / 4
    center = float(rng.uniform(58, 66))
    out = np.zeros((song.n, 2))
    rhythms = instrument.rhythms
    hits = [0] if rhythms is None else list(rhythms[rng.integers(len(rhythms))])  # sustained: one hit per chord
    params = _SETUP[instrument.tone](rng) if instrument.tone in _SETUP else {}
    pans = rng.uniform(-0.6, 0.6, size=6)
    voices = instrument.voices if isinstance(instrument.voices, int) else int(rng.integers(*instrument.voices))
    note_of = _CHORD_TONES[instrument.tone]
    previous = center
    for index, start in enumerate(song.chord_starts):
        if start >= song.seconds:
            break
        end = song.chord_starts[index + 1] if index + 1 < len(song.chord_starts) else start + 4 * song.beat
        chord = _voicing(song.chord_pcs(index), instrument.low, 79, voices, previous)
        previous = float(chord.mean())
        bar_hits = [start + h * step for h in hits if start + h * step < end]
        for hit_index, t in enumerate(bar_hits):
            nxt = bar_hits[hit_index + 1] if hit_index + 1 < len(bar_hits) else end
            hold = max(nxt - t, step) * instrument.legato
            velocity = rng.uniform(0.7, 1.0)
            if instrument.arpeggio:  # one chord tone per hit
                notes = [chord[hit_index % len(chord)] + 12 * int(rng.random() < 0.2)]
            else:
                notes = chord
            for v, midi in enumerate(notes):
                offset = v * rng.uniform(0.008, 0.02) if instrument.strum else 0.0
                note = note_of(rng, float(_hz(midi)), hold, sr, params)
                _place(out, t + offset, note, velocity / np.sqrt(len(notes)), pans[v % len(pans)], sr)
    return out


# per-layer draws, once per song and instrument
def _piano_setup(rng):
    coeffs = _K ** -rng.uniform(0.9, 1.5) * (1 + 0.5 * np.cos(_K * rng.uniform(0, 3)))
    return dict(coeffs=coeffs, decay=rng.uniform(0.6, 1.8), bright=rng.uniform(0.3, 1.2))


def _guitar_setup(rng):
    pluck = rng.uniform(0.08, 0.25)
    coeffs = _K ** -1.0 * np.abs(np.sin(np.pi * _K * pluck))
    return dict(coeffs=coeffs, decay=rng.uniform(1.5, 4.0), bright=rng.uniform(0.8, 2.5))


def _organ_setup(rng):
    # nine drawbars: 16', 8', 5 1/3', 4', 2 2/3', 2', 1 3/5', 1 1/3', 1' = harmonics 1-4, 6, 8, 10, 12, 16 of f0 / 2
    drawbars = rng.uniform(0.0, 1.0, size=9) * (rng.random(9) < 0.7)
    drawbars[1] = max(drawbars[1], 0.5)
    coeffs = np.zeros(16)
    coeffs[[0, 1, 2, 3, 5, 7, 9, 11, 15]] = drawbars
    return dict(coeffs=coeffs)


def _pluck_setup(rng):
    return dict(loop_gain=rng.uniform(0.990, 0.998), brightness=rng.uniform(0.3, 0.9))


def _mallet_setup(rng):
    bar = list(_BARS)[rng.integers(len(_BARS))]
    return dict(ratios=_BARS[bar], decay=rng.uniform(1.0, 4.0), hardness=rng.uniform(0.1, 0.6))


def _brass_setup(rng):
    return dict(brightness=rng.uniform(0.6, 0.85), attack=rng.uniform(0.03, 0.08))


def _bowed_setup(rng):
    return dict(detune=rng.uniform(5, 15), cutoff=rng.uniform(2000, 5000), attack=rng.uniform(0.15, 0.4))


_SETUP = {"piano": _piano_setup, "guitar": _guitar_setup, "organ": _organ_setup, "karplus_strong": _pluck_setup,
          "mallet": _mallet_setup, "brass": _brass_setup, "bowed": _bowed_setup}


# one note: (rng, f0 Hz, hold s, sr, the layer's params) -> (samples,)
def _struck(rng, f0, hold, sr, p):
    length = int((hold + 0.1) * sr)
    return _harmonic_tone(f0, length, sr, p["coeffs"], p["decay"], p["bright"], attack=0.003, hold=hold, release=0.08)


def _pad(rng, f0, hold, sr, p):
    length = int((hold + 0.3) * sr)
    cutoff = rng.uniform(1500.0, 3500.0)
    pad = 1.0 / _K / np.sqrt(1 + (_K * f0 / cutoff) ** 4)
    detune = 2 ** (np.array([-1, 1]) * rng.uniform(4, 12) / 1200)
    return sum(_harmonic_tone(f0 * d, length, sr, pad, 0.0, 0.0, attack=min(0.3, hold / 2), hold=hold, release=0.3,
                             fmax=8000) for d in detune) / 2


def _organ(rng, f0, hold, sr, p):
    length = int((hold + 0.05) * sr)
    return _harmonic_tone(f0 / 2, length, sr, p["coeffs"], 0.0, 0.0, attack=0.01, hold=hold, release=0.04)


def _fm_pad(rng, f0, hold, sr, p):
    length = int((hold + 0.4) * sr)
    ratio = float(rng.choice([1.0, 2.0, 3.0]))
    return _fm_tone(f0, length, sr, ratio, 0.3, rng.uniform(1.0, 2.5), rng.uniform(0.3, 1.0),
                   attack=min(0.25, hold / 2), hold=hold, release=0.35)


def _fm_ep(rng, f0, hold, sr, p):
    # Chowning-style electric piano, the index decays with the note
    length = int((hold + 0.2) * sr)
    return _fm_tone(f0, length, sr, 1.0, rng.uniform(2.0, 4.0), 0.3, rng.uniform(0.08, 0.25),
                   attack=0.002, hold=hold, release=0.15, decay=rng.uniform(1.0, 3.0))


def _karplus_strong(rng, f0, hold, sr, p):
    length = int((hold + 0.1) * sr)
    t = np.arange(length) / sr
    note = _karplus_strong_note(rng, f0, length, sr, p["loop_gain"], p["brightness"])
    return note * np.clip(1.0 - (t - hold) / 0.08, 0.0, 1.0)


def _mallet(rng, f0, hold, sr, p):
    return _bar_note(f0, int((hold + 0.3) * sr), sr, p["ratios"], p["decay"], p["hardness"])


def _brass(rng, f0, hold, sr, p):
    # about the loudness of the other tones: its partials sum to unit energy, theirs fall faster
    return 0.8 * _brass_note(f0, int((hold + 0.12) * sr), sr, p["attack"], hold, 0.1, p["brightness"])


def _bowed(rng, f0, hold, sr, p):
    return _bowed_note(rng, f0, int((hold + 0.35) * sr), sr, min(p["attack"], hold / 2), hold, 0.3, p["detune"],
                       p["cutoff"])


_CHORD_TONES = {"piano": _struck, "guitar": _struck, "pad": _pad, "organ": _organ, "fm_pad": _fm_pad, "fm_ep": _fm_ep,
         "karplus_strong": _karplus_strong, "mallet": _mallet, "brass": _brass, "bowed": _bowed}


# ---------------------------------------------------------------- vocals

# Peterson & Barney (1952) F1-F3 with typical F4, F5 (Hz): a, e, i, o, u, ae, uh
_VOWELS_MALE = np.array([
    [730, 1090, 2440, 3300, 4100], [530, 1840, 2480, 3300, 4100], [270, 2290, 3010, 3500, 4200],
    [570, 840, 2410, 3300, 4100], [300, 870, 2240, 3300, 4100], [660, 1720, 2410, 3300, 4100],
    [640, 1190, 2390, 3300, 4100],
], dtype=np.float64)
_VOWELS_FEMALE = np.array([
    [850, 1220, 2810, 3900, 4700], [610, 2330, 2990, 4000, 4800], [310, 2790, 3310, 4200, 4900],
    [590, 920, 2710, 3900, 4700], [370, 950, 2670, 3900, 4700], [860, 2050, 2850, 4000, 4800],
    [760, 1400, 2780, 3900, 4700],
], dtype=np.float64)
_BANDWIDTHS_MALE = np.array([80, 90, 120, 150, 200], dtype=np.float64)
_BANDWIDTHS_FEMALE = np.array([90, 110, 160, 200, 250], dtype=np.float64)
_TRACTS = {"male": (_VOWELS_MALE, _BANDWIDTHS_MALE), "female": (_VOWELS_FEMALE, _BANDWIDTHS_FEMALE)}


@dataclass
class _Note:
    start: float  # seconds
    duration: float
    midi: int
    vowel: int


def _melody(rng, song: _Song, center: int) -> list[_Note]:
    """Phrases of syllables on the beat grid, landing on chord tones where the chord changes."""
    pitches = song.in_key(center - 9, center + 9)
    index = int(np.argmin(np.abs(pitches - center)))
    durations, weights = np.array([0.5, 1.0, 1.5, 2.0]), np.array([0.35, 0.35, 0.15, 0.15])
    beats = song.seconds / song.beat
    vowels = len(_VOWELS_MALE)
    notes: list[_Note] = []
    position = float(rng.choice([0.0, 0.5, 1.0]))
    while position < beats:
        phrase_end = position + float(rng.choice([4.0, 6.0, 8.0]))
        vowel = int(rng.integers(vowels))
        while position < min(phrase_end, beats):
            duration = float(rng.choice(durations, p=weights))
            if rng.random() < 0.08:  # a short rest inside the phrase
                position += duration
                continue
            index = int(np.clip(index + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]), 0, len(pitches) - 1))
            t = position * song.beat
            chord = song.chord_index(t)
            if abs(song.chord_starts[chord] - t) < 1e-6 or rng.random() < 0.4:
                tones = [i for i, m in enumerate(pitches) if m % 12 in set(song.chord_pcs(chord).tolist())]
                index = min(tones, key=lambda i: abs(i - index))
            if rng.random() < 0.7:  # melismas keep the vowel
                vowel = int(rng.integers(vowels))
            notes.append(_Note(t, duration * song.beat, int(pitches[index]), vowel))
            position += duration
        position += float(rng.choice([1.0, 1.5, 2.0, 3.0]))  # breath between phrases
    if not notes:  # a track shorter than the pickup still gets a voice
        notes.append(_Note(0.0, song.seconds, int(pitches[index]), int(rng.integers(vowels))))
    return notes


def _formant_gain(freqs: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Magnitude of cascaded 2-pole resonators (Klatt 1980), unit gain at DC.

    ``freqs: (bins,)``, ``formants, bandwidths: (frames, formants)`` -> ``(frames, bins)``.
    """
    f2 = freqs[None, :] ** 2
    gain = np.ones((formants.shape[0], freqs.shape[0]))
    for i in range(formants.shape[1]):
        fi2 = formants[:, i:i + 1] ** 2
        bi = bandwidths[:, i:i + 1]
        gain *= fi2 / np.sqrt((fi2 - f2) ** 2 + f2 * bi**2)
    return gain


def _stft_filter(x: np.ndarray, gains: Callable[[np.ndarray, np.ndarray], np.ndarray], sr: int,
                 n_fft: int = 1024, hop: int = 256, chunk: int = 2048) -> np.ndarray:
    """Time-varying filtering by per-frame spectral gains (weighted overlap-add).

    ``gains(frame_times_s: (frames,), freqs: (bins,)) -> (frames, bins)``; ``x: (samples,)``.
    Frames are processed ``chunk`` at a time so long tracks need little memory.
    """
    padded = np.pad(x, (n_fft, n_fft + hop - len(x) % hop))
    frames = sliding_window_view(padded, n_fft)[::hop]
    window = np.hanning(n_fft + 1)[:-1]
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    overlap = n_fft // hop
    blocks = np.zeros((len(frames) + overlap - 1, hop))
    for first in range(0, len(frames), chunk):
        part = frames[first:first + chunk]
        times = (np.arange(first, first + len(part)) * hop + n_fft // 2 - n_fft) / sr
        shaped = np.fft.irfft(np.fft.rfft(part * window, axis=1) * gains(times, freqs), n_fft, axis=1) * window
        pieces = shaped.reshape(len(part), overlap, hop)
        for r in range(overlap):
            blocks[first + r:first + r + len(part)] += pieces[:, r]
    norm = np.sum(window.reshape(overlap, hop) ** 2, axis=0)  # constant for hann at hop n/4
    return (blocks / norm).reshape(-1)[n_fft:n_fft + len(x)]


def _vocals(rng, song: _Song, style, ir: np.ndarray, room) -> np.ndarray:
    """The vocal stem ``(samples, 2)``: one singer drawn from the style's voices."""
    sr, n = song.sr, song.n
    singer = _pick(rng, style.voices)
    center = int(rng.integers(*singer.center))
    notes = _melody(rng, song, center)
    starts = np.array([note.start for note in notes])
    t = np.arange(n) / sr

    # pitch: held notes with glides, delayed vibrato and slow drift (semitones)
    which = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(notes) - 1)
    target = np.array([note.midi for note in notes], dtype=np.float64)[which]
    glide = np.exp(-1.0 / (rng.uniform(0.02, 0.05) * sr))
    pitch = signal.lfilter([1 - glide], [1, -glide], target - target[0]) + target[0]
    rate = rng.uniform(*singer.vibrato_rate)
    depth = rng.uniform(*singer.vibrato_depth)  # semitones, half peak-to-peak
    delay = rng.uniform(*singer.vibrato_delay)
    onset = t - starts[which]
    vibrato_env = np.clip((onset - delay) / 0.25, 0.0, 1.0)
    vibrato = depth * vibrato_env * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    knots = np.arange(0, song.seconds + 0.3, 0.15)
    drift = np.interp(t, knots, rng.normal(0, 0.08, size=len(knots)))
    f0 = _hz(pitch + vibrato + drift)

    # syllable envelope: attack from silence, slight decay, release after the note
    loudness = np.zeros(n)
    for note in notes:
        length = int((note.duration + 0.12) * sr)
        local = np.arange(length) / sr
        attack = rng.uniform(0.02, 0.06)
        shape = _envelope(local, attack, note.duration * rng.uniform(0.85, 1.0), rng.uniform(0.05, 0.12))
        shape *= rng.uniform(0.7, 1.0) * (1 - 0.2 * local / (note.duration + 0.12))
        start = int(note.start * sr)
        stop = min(n, start + length)
        if start < n:
            loudness[start:stop] = np.maximum(loudness[start:stop], shape[: stop - start])
    loudness *= 1 + 0.1 * vibrato / max(depth, 1e-6) * vibrato_env  # tremolo follows vibrato

    # glottal source + aspiration noise
    cycle = _phase(f0, sr, rng.uniform())
    voiced = _glottal(rng, singer.source, cycle, f0, sr)
    if singer.harmony:  # a second singer through the same vocal tract: a double-tracked unison or a third above
        voiced = voiced + _second_voice(rng, singer, song, notes, which, glide, depth * vibrato_env, t)
    breath = rng.uniform(*singer.breath)
    noise = _filter(rng.standard_normal(n), sr, low=800) * (0.6 + 0.4 * np.cos(2 * np.pi * cycle))
    source = (voiced + breath * noise) * loudness

    # formants per frame follow each syllable's vowel, smoothed over about a syllable's onset
    vowels, bandwidths = _TRACTS[singer.vowels]
    table = vowels * singer.formant_scale * rng.uniform(0.93, 1.07)
    table = table * rng.uniform(0.96, 1.04, size=table.shape)
    bandwidths = bandwidths * rng.uniform(0.8, 1.3)
    vowel_of = np.array([note.vowel for note in notes])
    # formant tracks on the STFT filter's frame grid: each syllable's vowel, smoothed over about a syllable's onset
    grid = np.arange(-0.05, song.seconds + 0.05, 256 / sr)
    held = table[vowel_of[np.clip(np.searchsorted(starts, grid, side="right") - 1, 0, len(notes) - 1)]]
    kernel = np.hanning(9)[1:-1]
    tracks = [np.convolve(np.pad(f, 3, mode="edge"), kernel / kernel.sum(), mode="valid") for f in held.T]

    def gains(times, freqs):
        formants = np.stack([np.interp(times, grid, f) for f in tracks], axis=1)
        gain = _formant_gain(freqs, formants, np.broadcast_to(bandwidths, formants.shape))
        # a -40 dB floor keeps the voice's upper partials and breath above F5, as in real singing
        return gain / gain.max(axis=1, keepdims=True) + 0.01

    voice = _stft_filter(source, gains, sr)
    voice /= _rms(voice)

    # consonants at some syllable onsets: fricatives (s, sh, f) and plosive bursts
    for note in notes:
        kind = rng.random()
        if kind > singer.consonants:
            continue
        if kind < singer.fricatives:
            length = rng.uniform(0.05, 0.11)
            low, high = [(4000, 9000), (2000, 6000), (1500, 8000)][rng.integers(3)]
            local = np.arange(int(length * sr)) / sr
            burst = _filter(rng.standard_normal(len(local)), sr, low=low, high=high) * np.sin(np.pi * local / length)
            start = note.start - length * 0.8
        else:
            local = np.arange(int(0.012 * sr)) / sr
            burst = _filter(rng.standard_normal(len(local)), sr, low=500, high=5000) * np.exp(-local / 0.003)
            start = note.start - 0.01
        burst = burst / (_rms(burst) + 1e-12) * rng.uniform(0.2, 0.45)
        _place_mono(voice, start, burst, sr)

    pan = rng.uniform(-0.1, 0.1)
    dry = np.stack([voice * _pan(pan)[0], voice * _pan(pan)[1]], axis=1)
    return _with_reverb(dry, ir, wet=rng.uniform(0.04, 0.15) * room.wet)




def _second_voice(rng, singer, song: _Song, notes: list[_Note], which: np.ndarray, glide: float,
                  depth: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The voiced source ``(samples,)`` of a second singer: detuned, with its own vibrato and drift, quieter.

    ``singer.harmony``: ``"double"`` sings the melody, ``"third"`` the scale note two steps above each note.
    ``which: (samples,)`` is the note index per sample, ``depth: (samples,)`` the first singer's vibrato depth.
    """
    sr = song.sr
    midi = np.array([note.midi for note in notes], dtype=np.float64)
    if singer.harmony == "third":
        scale = song.in_key(12, 120)
        midi = np.array([scale[min(np.searchsorted(scale, m) + 2, len(scale) - 1)] for m in midi], dtype=np.float64)
    target = midi[which] + rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.15)  # detuned by 5-15 cents
    pitch = signal.lfilter([1 - glide], [1, -glide], target - target[0]) + target[0]
    vibrato = depth * np.sin(2 * np.pi * rng.uniform(*singer.vibrato_rate) * t + rng.uniform(0, 2 * np.pi))
    knots = np.arange(0, song.seconds + 0.3, 0.15)
    f0 = _hz(pitch + vibrato + np.interp(t, knots, rng.normal(0, 0.08, size=len(knots))))
    return rng.uniform(0.4, 0.7) * _glottal(rng, singer.source, _phase(f0, sr, rng.uniform()), f0, sr)


def _glottal(rng, source: str, cycle: np.ndarray, f0: np.ndarray, sr: int) -> np.ndarray:
    """The voiced source ``(samples,)`` for the oscillator phase ``cycle`` and ``f0: (samples,)`` Hz.

    ``_saw``: a band-limited sawtooth; ``rosenberg``: the derivative of a
    Rosenberg (1971) pulse (lip radiation); ``tilted_saw``: the sawtooth with an
    extra one-pole spectral tilt above a drawn corner (the TL parameter of
    Klatt & Klatt 1990), a softer, darker source.
    """
    if source == "rosenberg":
        opening, closing = rng.uniform(0.35, 0.45), rng.uniform(0.12, 0.2)
        flow = np.where(cycle < opening, 0.5 * (1 - np.cos(np.pi * cycle / opening)),
                        np.where(cycle < opening + closing, np.cos(np.pi / 2 * (cycle - opening) / closing), 0.0))
        return np.diff(flow, prepend=flow[0]) * sr / f0 / 4
    voiced = _saw(f0, sr)
    if source == "tilted_saw":
        pole = np.exp(-2 * np.pi * rng.uniform(400.0, 1500.0) / sr)
        voiced = signal.lfilter([1 - pole], [1, -pole], voiced)
    return voiced
