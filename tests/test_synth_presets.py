"""The synthetic generator's styles: exact renders of default/alt, presets per style, the unseen style kept apart."""
import dataclasses
import hashlib

import numpy as np
import pytest

from diffmsst_plugins.datasets import synthetic as synth
from diffmsst_plugins.datasets.synthetic import presets, songs, tree
from toolkit.data import SOURCES, STEMS

# sha1 of the float32 bytes of (mixture, drums, bass, other, vocals) for render_track(default_rng([s, 0, i, id]),
# 1.5 s, 22050 Hz): the generator before the presets were named, so default and alt stay the songs they were
RENDERS = {
    ("default", 0, 0): "11ad6e7eb951011fb5d8af74ef7044bfaf61d9a0",
    ("default", 1, 3): "f2d4bae03a5b1849bd269d0668e0e1df23cc94ba",
    ("default", 7, 2): "49f382e63f1f0df2eebb7c00d0567856daee5f80",
    ("alt", 0, 0): "f655911d9bf196ca622fb542bed3ea75597caabc",
    ("alt", 1, 3): "afcb9050568d7d7d878a1a837293579031c54e02",
    ("alt", 7, 2): "6793738870045000661394c79accb8a0c13fa423",
}
ROLES = ("voices", "kits", "basses", "instruments")  # the roles the unseen style must not share


def _sha1(stems: dict[str, np.ndarray]) -> str:
    return hashlib.sha1(b"".join(stems[name].tobytes() for name in STEMS)).hexdigest()


@pytest.mark.parametrize("style, seed, index", sorted(RENDERS))
def test_default_and_alt_render_exactly_as_before(style, seed, index):
    stems = synth.render_track(np.random.default_rng([seed, 0, index, tree.STYLE_IDS[style]]), 1.5, 22050, style)
    assert _sha1(stems) == RENDERS[(style, seed, index)]


def test_style_names_and_ids_agree_everywhere():
    assert tree.STYLES == tuple(presets.STYLES) == tuple(tree.STYLE_IDS) == synth.STYLES
    assert sorted(tree.STYLE_IDS.values()) == list(range(len(tree.STYLES)))
    assert tree.STYLE_IDS["varied"] == 2


def _shared(a: tuple, b: tuple) -> set[str]:
    """Names of presets of ``a`` that appear in ``b`` by name or, under any name, by their parameters."""
    anonymous = {dataclasses.replace(p, name="") for p in b}
    names = {p.name for p in b}
    return {p.name for p in a if p.name in names or dataclasses.replace(p, name="") in anonymous}


def test_the_sharing_check_sees_a_renamed_copy():
    organ = presets.INSTRUMENTS["organ"]
    assert _shared((organ,), (dataclasses.replace(organ, name="church_organ"),)) == {"organ"}
    assert _shared((organ,), (dataclasses.replace(organ, legato=0.5),)) == {"organ"}  # same name
    assert _shared((organ,), (presets.INSTRUMENTS["piano"],)) == set()


@pytest.mark.parametrize("other", ["default", "varied"])
def test_the_unseen_style_shares_no_voice_kit_bass_or_instrument(other):
    alt, seen = presets.STYLES["alt"], presets.STYLES[other]
    for role in ROLES:
        assert _shared(getattr(alt, role), getattr(seen, role)) == set(), (role, other)
    # nor a synthesis method: glottal source, drum sound, bass or chord tone
    assert {v.source for v in alt.voices}.isdisjoint(v.source for v in seen.voices)
    alt_sounds = {sound for kit in alt.kits for _, sound in kit.sounds}
    assert alt_sounds.isdisjoint(sound for kit in seen.kits for _, sound in kit.sounds)
    assert {b.tone for b in alt.basses}.isdisjoint(b.tone for b in seen.basses)
    assert {i.tone for i in alt.instruments}.isdisjoint(i.tone for i in seen.instruments)


def test_varied_holds_default_and_more():
    default, varied = presets.STYLES["default"], presets.STYLES["varied"]
    for role in ROLES + ("grooves", "rooms"):
        mine, theirs = getattr(varied, role), getattr(default, role)
        assert set(theirs) < set(mine), role
    assert {m for m, _ in default.modes} < {m for m, _ in varied.modes}
    assert varied.tempo[0] < default.tempo[0] and varied.tempo[1] > default.tempo[1]
    assert len({v.center for v in varied.voices}) == len(varied.voices)  # each voice its own range
    for style in presets.STYLES.values():
        assert sum(p for _, p in style.modes) == pytest.approx(1.0)
        assert all(m in songs._SCALES for m, _ in style.modes)


def test_varied_reaches_every_preset_and_mode(monkeypatch):
    seen = set()
    pick, layer, mode = songs._pick, songs._chord_layer, songs._draw_mode

    def recording_pick(rng, options):
        preset = pick(rng, options)
        seen.add(preset.name)
        return preset

    def recording_layer(rng, song, instrument):
        seen.add(instrument.name)
        return layer(rng, song, instrument)

    def recording_mode(rng, modes):
        name = mode(rng, modes)
        seen.add(name)
        return name

    monkeypatch.setattr(songs, "_pick", recording_pick)
    monkeypatch.setattr(songs, "_chord_layer", recording_layer)
    monkeypatch.setattr(songs, "_draw_mode", recording_mode)
    style = presets.STYLES["varied"]
    wanted = {p.name for role in ROLES + ("grooves", "rooms") for p in getattr(style, role)} | {m for m, _ in style.modes}
    for index in range(60):
        synth.render_track(np.random.default_rng([0, 0, index, 2]), 0.5, 8000, "varied")
        if wanted <= seen:
            break
    assert wanted - seen == set()


@pytest.mark.parametrize("style", synth.STYLES)
def test_every_style_renders_exact_sums_stereo_and_no_silent_stem(style):
    for index in range(3):
        rng = np.random.default_rng([5, 0, index, tree.STYLE_IDS[style]])
        stems = synth.render_track(rng, 1.0, 16000, style)
        assert list(stems) == list(STEMS)
        assert all(s.shape == (16000, 2) and s.dtype == np.float32 and np.isfinite(s).all() for s in stems.values())
        assert np.array_equal(stems["mixture"], ((stems["drums"] + stems["bass"]) + stems["other"]) + stems["vocals"])
        assert np.abs(stems["mixture"]).max() < 1.0
        assert all(np.abs(stems[s]).max() > 1e-3 for s in SOURCES), (style, index)
        assert not np.allclose(stems["mixture"][:, 0], stems["mixture"][:, 1])
    again = synth.render_track(np.random.default_rng([5, 0, 2, tree.STYLE_IDS[style]]), 1.0, 16000, style)
    assert all(np.array_equal(again[name], stems[name]) for name in STEMS)


@pytest.mark.parametrize("harmony, midi", [("double", 60), ("third", 64)])
def test_a_second_singer_doubles_the_melody_or_sings_a_third_above(harmony, midi):
    sr, seconds = 16000, 1.0
    song = songs._Song(sr=sr, n=sr, beat=0.5, key=0, scale=songs._SCALES["major"], chord_starts=np.array([0.0]),
                       chord_degrees=np.array([0]))
    singer = dataclasses.replace(presets.VOICES["alto"], harmony=harmony)
    t = np.arange(sr) / sr
    source = songs._second_voice(np.random.default_rng(0), singer, song, [songs._Note(0.0, seconds, 60, 0)],
                                 np.zeros(sr, dtype=int), 0.99, np.zeros(sr), t)
    spectrum = np.abs(np.fft.rfft(source * np.hanning(sr), 8 * sr))
    freqs = np.fft.rfftfreq(8 * sr, 1 / sr)
    band = (freqs > 150) & (freqs < 600)  # the fundamental is the loudest partial of the sawtooth source
    cents = 1200 * np.log2(freqs[band][np.argmax(spectrum[band])] / (440 * 2 ** ((midi - 69) / 12)))
    assert abs(cents) < 30, (harmony, cents)  # C4 doubled (detuned 5-15 cents, drifting), or E4 over C4 in C major
