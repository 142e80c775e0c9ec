"""One synthetic song: four music-like stereo stems that sum to the mixture.

Each song is drawn from a ``numpy.random.Generator``: a key, mode, tempo,
chord progression and per-source timbres, loudness ratios and panning.

- vocals: source-filter voice (Fant's model): a band-limited glottal source
  (PolyBLEP sawtooth, Välimäki & Huovilainen 2007; or the derivative of a
  Rosenberg 1971 pulse for ``style="alt"``) plus aspiration noise, shaped by 5
  cascaded formant resonators (Klatt 1980) per vowel (Peterson & Barney 1952
  tables) whose targets change per syllable, with glides, delayed vibrato,
  pitch drift, syllable envelopes, fricative/plosive onsets, phrase gaps and a
  melody in the key that lands on chord tones;
- drums: kick (pitch-swept sine), snare (band-passed noise + tone), hats
  (high-passed noise) on a 16th grid at the tempo; ``alt``: 808-style kick,
  clap, metallic square-cluster hats, shaker;
- bass: plucked harmonic notes on the chord roots (``alt``: square/saw synth bass);
- other: chords as piano-like, strummed or detuned-pad harmonic voices
  (``alt``: FM pads, FM electric piano arpeggios, drawbar organ),
  overlapping the vocal range.

The vocal-to-accompaniment ratio is drawn in decibels from [-3, 3]; all stems are scaled
by one factor so that nothing clips.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from toolkit.data import STEMS


def render_track(rng: np.random.Generator, seconds: float, sample_rate: int, style: str = "default") -> dict[str, np.ndarray]:
    """One synthetic song: ``{stem: (samples, 2) float32}`` for every name in ``STEMS``.

    ``mixture`` is the float32 sum ``((drums + bass) + other) + vocals``.
    """
    song = _plan_song(rng, seconds, sample_rate, style)
    room = _reverb_ir(rng, sample_rate, rt60=rng.uniform(0.5, 1.6), style=style)
    drums = _unit_rms(_drums(rng, song, style, room))
    bass = _unit_rms(_bass(rng, song, style))
    other = _unit_rms(_other(rng, song, style, room))
    vocals = _unit_rms(_vocals(rng, song, style, room))
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



# ---------------------------------------------------------------- song plan

_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
# chord progressions as scale degrees (0 = tonic)
_PROGRESSIONS = {
    False: [(0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (1, 4, 0, 5), (0, 2, 3, 4)],
    True: [(0, 5, 2, 6), (0, 3, 6, 2), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 4, 0)],
}


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


def _plan_song(rng, seconds, sr, style) -> _Song:
    tempo = rng.uniform(78, 140) if style == "default" else rng.uniform(96, 150)
    beat = 60.0 / tempo
    minor = bool(rng.random() < 0.45)
    progression = _PROGRESSIONS[minor][rng.integers(len(_PROGRESSIONS[minor]))]
    beats_per_chord = int(rng.choice([2, 4, 4, 4]))
    count = int(np.ceil(seconds / (beat * beats_per_chord))) + 1
    starts = np.arange(count) * beat * beats_per_chord
    degrees = np.array([progression[i % len(progression)] for i in range(count)])
    return _Song(sr=sr, n=int(round(seconds * sr)), beat=beat, key=int(rng.integers(12)),
                 scale=_MINOR if minor else _MAJOR, chord_starts=starts, chord_degrees=degrees)


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


def _reverb_ir(rng, sr: int, rt60: float, style: str) -> np.ndarray:
    """``(2, taps)`` decorrelated exponentially decaying noise, unit energy per channel."""
    rt60 = rt60 * (0.7 if style == "alt" else 1.0)
    taps = max(16, int(min(rt60, 1.5) * sr))
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


# ---------------------------------------------------------------- drums

def _drum_kit(rng, sr: int, style: str) -> dict[str, np.ndarray]:
    def seconds(x):
        return np.arange(int(x * sr)) / sr

    kit = {}
    if style == "default":
        t = seconds(0.5)
        f_hi, f_lo, tau_f = rng.uniform(100, 170), rng.uniform(42, 62), rng.uniform(0.02, 0.05)
        freq = f_lo + (f_hi - f_lo) * np.exp(-t / tau_f)
        kick = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / rng.uniform(0.08, 0.2))
        click = _filter(rng.standard_normal(len(t)), sr, low=1500) * np.exp(-t / 0.003)
        kit["kick"] = kick + 0.3 * click
        t = seconds(0.4)
        tone = np.sin(2 * np.pi * rng.uniform(170, 240) * t) * np.exp(-t / rng.uniform(0.03, 0.07))
        noise = _filter(rng.standard_normal(len(t)), sr, low=rng.uniform(1200, 2500), high=rng.uniform(7000, 11000))
        kit["snare"] = 0.6 * tone + noise * np.exp(-t / rng.uniform(0.06, 0.15)) * 1.5
        t = seconds(0.25)
        hat = _filter(rng.standard_normal(len(t)), sr, low=rng.uniform(6500, 9000), order=4)
        kit["hat"] = hat * np.exp(-t / rng.uniform(0.015, 0.04))
        t = seconds(1.2)
        open_hat = _filter(rng.standard_normal(len(t)), sr, low=rng.uniform(5000, 7000), order=4)
        kit["open"] = open_hat * np.exp(-t / rng.uniform(0.2, 0.45))
    else:
        t = seconds(0.9)
        f_hi, f_lo = rng.uniform(60, 95), rng.uniform(36, 50)
        freq = f_lo + (f_hi - f_lo) * np.exp(-t / rng.uniform(0.04, 0.1))
        kit["kick"] = np.tanh(1.5 * np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / rng.uniform(0.25, 0.55)))
        t = seconds(0.35)
        bursts = sum(np.exp(-np.maximum(t - d, 0) / 0.004) * (t >= d) for d in (0.0, 0.011, 0.022))
        tail = np.exp(-t / rng.uniform(0.05, 0.12)) * (t >= 0.03)
        kit["snare"] = _filter(rng.standard_normal(len(t)), sr, low=700, high=rng.uniform(2500, 4000)) * (bursts + tail) * 2
        t = seconds(0.3)
        partials = np.array([205.3, 304.4, 369.6, 522.7, 540.0, 800.0]) * rng.uniform(1.0, 1.35)
        metal = sum(np.sign(np.sin(2 * np.pi * f * t)) for f in partials)
        kit["hat"] = _filter(metal, sr, low=7000, order=4) * np.exp(-t / rng.uniform(0.02, 0.05))
        t = seconds(0.12)
        shaker = _filter(rng.standard_normal(len(t)), sr, low=4500, high=10000)
        kit["open"] = shaker * np.minimum(1, t / 0.01) * np.exp(-t / 0.03)
    return {name: sound / np.max(np.abs(sound)) for name, sound in kit.items()}


# 16th-note step patterns per bar: kick, snare, hat, open/shaker
_GROOVES = {
    "default": [
        dict(kick=[0, 8], snare=[4, 12], hat=list(range(0, 16, 2)), open=[]),
        dict(kick=[0, 6, 8], snare=[4, 12], hat=list(range(16)), open=[14]),
        dict(kick=[0, 10], snare=[8], hat=list(range(0, 16, 2)), open=[6]),
        dict(kick=[0, 7, 8, 14], snare=[4, 12], hat=list(range(0, 16, 2)), open=[]),
    ],
    "alt": [
        dict(kick=[0, 4, 8, 12], snare=[4, 12], hat=[2, 6, 10, 14], open=list(range(16))),
        dict(kick=[0, 7, 10], snare=[8], hat=list(range(16)), open=[]),
        dict(kick=[0, 3, 10], snare=[4, 12], hat=list(range(0, 16, 2)), open=[1, 5, 9, 13]),
    ],
}


def _drums(rng, song: _Song, style: str, room: np.ndarray) -> np.ndarray:
    sr = song.sr
    kit = _drum_kit(rng, sr, style)
    groove = _GROOVES[style][rng.integers(len(_GROOVES[style]))]
    pans = {"kick": 0.0, "snare": rng.uniform(-0.15, 0.15), "hat": rng.uniform(-0.5, 0.5), "open": rng.uniform(-0.6, 0.6)}
    levels = {"kick": 1.0, "snare": rng.uniform(0.6, 1.0), "hat": rng.uniform(0.2, 0.45), "open": rng.uniform(0.15, 0.35)}
    swing = rng.uniform(0.0, 0.12) if style == "default" else 0.0
    jitter = 0.004 if style == "default" else 0.0
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
            for s in sorted(set(steps)):
                t = (bar * 16 + s) * step + (swing * step if s % 2 else 0.0) + rng.normal(0, jitter)
                velocity = rng.uniform(0.75, 1.0) * (0.7 if name == "hat" and s % 4 else 1.0)
                _place(out, t, kit[name], levels[name] * velocity, pans[name], sr)
    return _with_reverb(out, room, wet=rng.uniform(0.05, 0.2))


# ---------------------------------------------------------------- bass

def _bass(rng, song: _Song, style: str) -> np.ndarray:
    sr = song.sr
    k = np.arange(1, 41)
    if style == "default":
        pluck = rng.uniform(0.1, 0.3)
        coeffs = k ** -rng.uniform(1.0, 1.6) * np.abs(np.sin(np.pi * k * pluck)) / np.sin(np.pi * pluck)
        decay, bright, sustain = rng.uniform(1.0, 3.0), rng.uniform(1.0, 4.0), 0.9
        patterns = [[0, 4, 8, 12], [0, 2, 4, 6, 8, 10, 12, 14], [0, 6, 8, 14], [0, 3, 6, 8, 11, 14]]
    else:
        coeffs = np.where(k % 2 == 1, 1.0 / k, 0.0) if rng.random() < 0.6 else 1.0 / k
        decay, bright, sustain = rng.uniform(0.2, 1.0), rng.uniform(4.0, 12.0), 0.6
        patterns = [[0, 2, 4, 6, 8, 10, 12, 14], [0, 3, 6, 10, 12], [2, 6, 10, 14], [0, 7, 10]]
    steps = patterns[rng.integers(len(patterns))]
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
        hold = following * step * sustain
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


def _other(rng, song: _Song, style: str, room: np.ndarray) -> np.ndarray:
    instruments = ["piano", "guitar", "pad"] if style == "default" else ["fm_pad", "fm_ep", "organ"]
    layers = rng.choice(instruments, size=int(rng.integers(1, 3)), replace=False)
    out = np.zeros((song.n, 2))
    for j, instrument in enumerate(layers):
        layer = _chord_layer(rng, song, str(instrument))
        width = rng.uniform(0.2, 0.7)
        left, right = (1 + width) / 2, (1 - width) / 2
        if j % 2:
            left, right = right, left
        out += layer * np.array([left, right]) * rng.uniform(0.6, 1.0)
    return _with_reverb(out, room, wet=rng.uniform(0.15, 0.45))


def _chord_layer(rng, song: _Song, instrument: str) -> np.ndarray:
    sr = song.sr
    k = np.arange(1, 41)
    step = song.beat / 4
    center = float(rng.uniform(58, 66))
    out = np.zeros((song.n, 2))
    if instrument in ("piano", "guitar", "fm_ep"):
        if instrument == "fm_ep":
            rhythms = [list(range(0, 16, 2)), list(range(16))]
        else:
            rhythms = [[0, 6, 8, 14], [0, 4, 8, 12], [0, 3, 6, 10, 12], [0, 8]]
        hits = rhythms[rng.integers(len(rhythms))]
    else:
        hits = [0]  # sustained: one hit per chord
    if instrument == "piano":
        coeffs = k ** -rng.uniform(0.9, 1.5) * (1 + 0.5 * np.cos(k * rng.uniform(0, 3)))
        decay, bright = rng.uniform(0.6, 1.8), rng.uniform(0.3, 1.2)
    elif instrument == "guitar":
        pluck = rng.uniform(0.08, 0.25)
        coeffs = k ** -1.0 * np.abs(np.sin(np.pi * k * pluck))
        decay, bright = rng.uniform(1.5, 4.0), rng.uniform(0.8, 2.5)
    elif instrument == "organ":
        # nine drawbars: 16', 8', 5 1/3', 4', 2 2/3', 2', 1 3/5', 1 1/3', 1' = harmonics 1-4, 6, 8, 10, 12, 16 of f0 / 2
        drawbars = rng.uniform(0.0, 1.0, size=9) * (rng.random(9) < 0.7)
        drawbars[1] = max(drawbars[1], 0.5)
        coeffs = np.zeros(16)
        coeffs[[0, 1, 2, 3, 5, 7, 9, 11, 15]] = drawbars
    pans = rng.uniform(-0.6, 0.6, size=6)
    voices = int(rng.integers(3, 5)) if instrument != "guitar" else 5
    previous = center
    for index, start in enumerate(song.chord_starts):
        if start >= song.seconds:
            break
        end = song.chord_starts[index + 1] if index + 1 < len(song.chord_starts) else start + 4 * song.beat
        chord = _voicing(song.chord_pcs(index), 45 if instrument == "guitar" else 50, 79, voices, previous)
        previous = float(chord.mean())
        bar_hits = [start + h * step for h in hits if start + h * step < end]
        for hit_index, t in enumerate(bar_hits):
            nxt = bar_hits[hit_index + 1] if hit_index + 1 < len(bar_hits) else end
            hold = max(nxt - t, step) * (0.95 if instrument in ("pad", "fm_pad", "organ") else 0.85)
            velocity = rng.uniform(0.7, 1.0)
            if instrument == "fm_ep":  # arpeggio: one chord tone per hit
                notes = [chord[hit_index % len(chord)] + 12 * int(rng.random() < 0.2)]
            else:
                notes = chord
            for v, midi in enumerate(notes):
                f0 = float(_hz(midi))
                offset = v * rng.uniform(0.008, 0.02) if instrument == "guitar" else 0.0
                note = _chord_note(rng, instrument, f0, hold, sr, coeffs if instrument in ("piano", "guitar", "organ") else None,
                                   decay if instrument in ("piano", "guitar") else 0.0,
                                   bright if instrument in ("piano", "guitar") else 0.0)
                _place(out, t + offset, note, velocity / np.sqrt(len(notes)), pans[v % len(pans)], sr)
    return out


def _chord_note(rng, instrument: str, f0: float, hold: float, sr: int, coeffs, decay: float, bright: float) -> np.ndarray:
    if instrument in ("piano", "guitar"):
        length = int((hold + 0.1) * sr)
        return _harmonic_tone(f0, length, sr, coeffs, decay, bright, attack=0.003, hold=hold, release=0.08)
    if instrument == "pad":
        length = int((hold + 0.3) * sr)
        k = np.arange(1, 41)
        cutoff = rng.uniform(1500.0, 3500.0)
        pad = 1.0 / k / np.sqrt(1 + (k * f0 / cutoff) ** 4)
        detune = 2 ** (np.array([-1, 1]) * rng.uniform(4, 12) / 1200)
        return sum(_harmonic_tone(f0 * d, length, sr, pad, 0.0, 0.0, attack=min(0.3, hold / 2), hold=hold, release=0.3,
                                  fmax=8000) for d in detune) / 2
    if instrument == "organ":
        length = int((hold + 0.05) * sr)
        return _harmonic_tone(f0 / 2, length, sr, coeffs, 0.0, 0.0, attack=0.01, hold=hold, release=0.04)
    if instrument == "fm_pad":
        length = int((hold + 0.4) * sr)
        ratio = float(rng.choice([1.0, 2.0, 3.0]))
        return _fm_tone(f0, length, sr, ratio, 0.3, rng.uniform(1.0, 2.5), rng.uniform(0.3, 1.0),
                        attack=min(0.25, hold / 2), hold=hold, release=0.35)
    # fm_ep: Chowning-style electric piano, the index decays with the note
    length = int((hold + 0.2) * sr)
    return _fm_tone(f0, length, sr, 1.0, rng.uniform(2.0, 4.0), 0.3, rng.uniform(0.08, 0.25),
                    attack=0.002, hold=hold, release=0.15, decay=rng.uniform(1.0, 3.0))


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


def _vocals(rng, song: _Song, style: str, room: np.ndarray) -> np.ndarray:
    sr, n = song.sr, song.n
    female = style == "alt"
    center = int(rng.integers(62, 70)) if female else int(rng.integers(50, 58))
    notes = _melody(rng, song, center)
    starts = np.array([note.start for note in notes])
    t = np.arange(n) / sr

    # pitch: held notes with glides, delayed vibrato and slow drift (semitones)
    which = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(notes) - 1)
    target = np.array([note.midi for note in notes], dtype=np.float64)[which]
    glide = np.exp(-1.0 / (rng.uniform(0.02, 0.05) * sr))
    pitch = signal.lfilter([1 - glide], [1, -glide], target - target[0]) + target[0]
    rate = rng.uniform(6.0, 7.5) if female else rng.uniform(4.8, 6.2)
    depth = (rng.uniform(0.15, 0.35) if female else rng.uniform(0.3, 0.7))  # semitones, half peak-to-peak
    delay = rng.uniform(0.05, 0.15) if female else rng.uniform(0.15, 0.35)
    onset = t - starts[which]
    vibrato_env = np.clip((onset - delay) / 0.25, 0.0, 1.0)
    vibrato = depth * vibrato_env * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    knots = np.arange(0, song.seconds + 0.3, 0.15)
    drift = np.interp(t, knots, rng.normal(0, 0.08, size=len(knots)))
    f0 = _hz(pitch + vibrato + drift)

    # syllable envelope: attack from silence, slight decay, release after the note
    envelope = np.zeros(n)
    for note in notes:
        length = int((note.duration + 0.12) * sr)
        local = np.arange(length) / sr
        attack = rng.uniform(0.02, 0.06)
        shape = _envelope(local, attack, note.duration * rng.uniform(0.85, 1.0), rng.uniform(0.05, 0.12))
        shape *= rng.uniform(0.7, 1.0) * (1 - 0.2 * local / (note.duration + 0.12))
        start = int(note.start * sr)
        stop = min(n, start + length)
        if start < n:
            envelope[start:stop] = np.maximum(envelope[start:stop], shape[: stop - start])
    envelope *= 1 + 0.1 * vibrato / max(depth, 1e-6) * vibrato_env  # tremolo follows vibrato

    # glottal source + aspiration noise
    cycle = _phase(f0, sr, rng.uniform())
    if female:  # Rosenberg (1971) pulse, differentiated for lip radiation
        opening, closing = rng.uniform(0.35, 0.45), rng.uniform(0.12, 0.2)
        flow = np.where(cycle < opening, 0.5 * (1 - np.cos(np.pi * cycle / opening)),
                        np.where(cycle < opening + closing, np.cos(np.pi / 2 * (cycle - opening) / closing), 0.0))
        voiced = np.diff(flow, prepend=flow[0]) * sr / f0 / 4
        breath = rng.uniform(0.15, 0.3)
    else:
        voiced = _saw(f0, sr)
        breath = rng.uniform(0.03, 0.1)
    noise = _filter(rng.standard_normal(n), sr, low=800) * (0.6 + 0.4 * np.cos(2 * np.pi * cycle))
    source = (voiced + breath * noise) * envelope

    # formants per frame follow each syllable's vowel, smoothed over about a syllable's onset
    table = (_VOWELS_FEMALE if female else _VOWELS_MALE) * rng.uniform(0.93, 1.07)
    table = table * rng.uniform(0.96, 1.04, size=table.shape)
    bandwidths = (_BANDWIDTHS_FEMALE if female else _BANDWIDTHS_MALE) * rng.uniform(0.8, 1.3)
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
        if kind > 0.35:
            continue
        if kind < 0.22:
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
    return _with_reverb(dry, room, wet=rng.uniform(0.04, 0.15))


def _place_mono(out: np.ndarray, start_s: float, sound: np.ndarray, sr: int) -> None:
    start = int(round(start_s * sr))
    skip = max(0, -start)
    start = max(0, start)
    stop = min(len(out), start + len(sound) - skip)
    if stop > start:
        out[start:stop] += sound[skip:skip + stop - start]
