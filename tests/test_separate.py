"""Separation of real files: formats kept, outputs sum to the input, chunking, determinism, API."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import CLIP, REPO, SHARED, assert_one_line_error, run_cli
from test_bad_inputs import invoke

TINY = REPO / "tests" / "tiny.gin"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("sep") / "run"
    run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--out", out, check=0,
            env={"TOOLKIT_CACHE": str(tmp_path_factory.getbasetemp() / "toolkit-cache")})
    return out / "checkpoints" / "last.pt"


def _song(rate, channels, seconds=1.3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(t.shape)
    return np.stack([x * (0.8 + 0.2 * c) for c in range(channels)]).astype(np.float32)


CASES = [("wav", "PCM_16", 44100, 2), ("wav", "FLOAT", 22050, 1), ("wav", "PCM_16", 48000, 1),
         ("flac", "PCM_16", 48000, 2), ("flac", "PCM_24", 22050, 2), ("wav", "PCM_24", 44100, 1)]


@pytest.mark.parametrize("ext,subtype,rate,channels", CASES)
def test_separate_keeps_format_and_sums_to_input(checkpoint, tmp_path, ext, subtype, rate, channels):
    song = tmp_path / f"song.{ext}"
    sf.write(song, _song(rate, channels).T, rate, subtype=subtype)
    out = tmp_path / "out"
    run_cli("separate", song, "--checkpoint", checkpoint, "--out", out, "--format", ext, check=0)
    mix, _ = sf.read(song, dtype="float64", always_2d=True)
    info_in = sf.info(song)
    total = 0
    for name in ("vocals", "instrumental"):
        path = out / "run" / "song" / f"{name}.{ext}"
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (rate, channels, info_in.frames, subtype)
        data, _ = sf.read(path, dtype="float64", always_2d=True)
        total = total + data
    tol = 1e-5 if subtype == "FLOAT" else 2.0 / 2 ** (int(subtype[4:]) - 1)
    assert np.abs(total - mix).max() <= tol
    assert not list((out / "run" / "song").glob(".*tmp*"))


def test_same_seed_same_files_and_api_matches_cli(checkpoint, tmp_path):
    from toolkit import Separator

    song = tmp_path / "a.wav"
    audio = _song(22050, 2, seconds=2.5, seed=3)
    sf.write(song, audio.T, 22050, subtype="FLOAT")
    for out in ("o1", "o2"):
        run_cli("separate", song, "--checkpoint", checkpoint, "--out", tmp_path / out, "--seed", "7", check=0)
    for name in ("vocals.wav", "instrumental.wav"):  # float WAV headers carry a write-time PEAK stamp: compare samples
        a, _ = sf.read(tmp_path / "o1/run/a" / name, dtype="float32")
        b, _ = sf.read(tmp_path / "o2/run/a" / name, dtype="float32")
        assert np.array_equal(a, b)
    sep = Separator.from_checkpoint(checkpoint, seed=7)
    vocals, inst = sep(torch.from_numpy(audio), 22050)
    cli_inst, _ = sf.read(tmp_path / "o1/run/a/instrumental.wav", dtype="float32", always_2d=True)
    assert np.abs(inst.numpy() - cli_inst.T).max() < 1e-5
    assert torch.allclose(vocals + inst, torch.from_numpy(audio), atol=1e-6)


def test_chunked_matches_unchunked_away_from_seams(checkpoint):
    from toolkit import Separator

    audio = _song(22050, 1, seconds=0.5, seed=1)
    whole = Separator.from_checkpoint(checkpoint, seed=0, segment=0.5)
    v1, i1 = whole(audio, 22050)
    # the same input inside a longer, chunked call: the first segment is the same chunk
    longer = np.concatenate([audio, _song(22050, 1, seconds=1.0, seed=2)], axis=1)
    chunked = Separator.from_checkpoint(checkpoint, seed=0, segment=0.5, overlap=0.0)
    v2, i2 = chunked(longer, 22050)
    # batch composition changes bf16 rounding slightly; the chunk itself is the same
    assert torch.allclose(i1, i2[:, : audio.shape[1]], atol=2e-3)


def test_folder_input_and_progress(checkpoint, tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    for i in range(2):
        sf.write(folder / f"s{i}.wav", _song(22050, 1, seed=i).T, 22050)
    run_cli("separate", folder, "--checkpoint", checkpoint, "--out", tmp_path / "o", check=0)
    assert sorted(p.name for p in (tmp_path / "o" / "run").iterdir()) == ["s0", "s1"]


def test_silence_and_one_sample(checkpoint, tmp_path):
    for name, audio in (("silence", np.zeros((2, 22050), np.float32)), ("one", np.array([[0.5]], np.float32))):
        sf.write(tmp_path / f"{name}.wav", audio.T, 22050, subtype="FLOAT")
        run_cli("separate", tmp_path / f"{name}.wav", "--checkpoint", checkpoint, "--out", tmp_path / "o", check=0)
        v, _ = sf.read(tmp_path / "o" / "run" / name / "vocals.wav", always_2d=True)
        i, _ = sf.read(tmp_path / "o" / "run" / name / "instrumental.wav", always_2d=True)
        assert v.shape == audio.T.shape and np.isfinite(v).all() and np.allclose(v + i, audio.T, atol=1e-6)


def _toolkit(capfd, *args, check=None):
    """``toolkit ARGS`` in this process (the CLI's code path without an interpreter start-up)."""
    return invoke(list(args), capfd, check=check)


def test_separate_bad_inputs(checkpoint, tmp_path, capfd):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio at all")
    (tmp_path / "nofiles").mkdir()
    for bad, needle in ((tmp_path / "missing.wav", "no such"), (tmp_path / "empty.wav", "empty"),
                        (tmp_path / "text.wav", "not a readable audio file"), (tmp_path / "nofiles", "no audio")):
        p = _toolkit(capfd, "separate", bad, "--checkpoint", checkpoint, "--out", tmp_path / "o")
        assert_one_line_error(p, 2, needle)
    good = tmp_path / "g.wav"
    sf.write(good, _song(22050, 1).T, 22050)
    for ckpt in (tmp_path / "none.pt", good):
        assert_one_line_error(_toolkit(capfd, "separate", good, "--checkpoint", ckpt, "--out", tmp_path / "o"), 2, "checkpoint")
    assert_one_line_error(_toolkit(capfd, "separate", good, "--checkpoint", checkpoint, "--steps", "0", "--out", tmp_path / "o"),
                          2, "--steps")
    assert_one_line_error(_toolkit(capfd, "separate", good, "--checkpoint", checkpoint, "--segment", "0.001", "--out",
                                   tmp_path / "o"), 2, "--segment")
    assert not (tmp_path / "o" / "run" / "g").exists()
    # one of them in a fresh interpreter, as a user runs it
    assert_one_line_error(run_cli("separate", tmp_path / "text.wav", "--checkpoint", checkpoint, "--out", tmp_path / "o"),
                          2, "not a readable audio file")


@pytest.mark.skipif(not CLIP.exists(), reason=f"shared MUSDB18 clip not found at {CLIP}")
def test_evaluate_estimates_reproduces_museval_reference(tmp_path):
    import musdb

    track = musdb.DB(root=str(CLIP), subsets="train").tracks[0]
    np.random.seed(0)
    voc = np.random.random(track.audio.shape)
    acc = np.random.random(track.audio.shape)
    folder = tmp_path / "est" / "train" / track.name
    folder.mkdir(parents=True)
    sf.write(folder / "vocals.wav", voc, track.rate, subtype="DOUBLE")
    sf.write(folder / "accompaniment.wav", acc, track.rate, subtype="DOUBLE")
    run_cli("evaluate", "--estimates", tmp_path / "est", "--root", CLIP, "--subset", "train", "--no-baseline", check=0)
    ours = json.loads((tmp_path / "est" / "scores" / "train" / f"{track.name}.json").read_text())
    ref = json.loads((SHARED / "museval-reference-80s-rock.json").read_text())
    for t_ours, t_ref in zip(ours["targets"], ref["targets"]):
        assert t_ours["name"] == t_ref["name"]
        assert len(t_ours["frames"]) == len(t_ref["frames"])
        for f_ours, f_ref in zip(t_ours["frames"], t_ref["frames"]):
            for metric in ("SDR", "SIR", "SAR", "ISR"):
                assert np.allclose(f_ours["metrics"][metric], f_ref["metrics"][metric], atol=0.1), (metric, f_ours, f_ref)


PLUGIN_SAMPLER = '''
import torch
from toolkit import registry

@registry.register("samplers", "x0_in_one_step")
def x0_in_one_step(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None):
    """Third-party sampler: one jump from x_T to the predicted x0 at the last timestep."""
    t = torch.full((x_T.shape[0],), diffusion.num_timesteps - 1, dtype=torch.long, device=x_T.device)
    x0 = diffusion.predict_x0(x_T, t, model_fn(x_T, t, cond)).clamp(-1, 1)
    if callback:
        callback(0, 1, x0)
    return x0
'''


def test_plugin_sampler_written_outside_the_repo_separates(checkpoint, tmp_path):
    plugin = tmp_path / "my_sampler.py"
    plugin.write_text(PLUGIN_SAMPLER)
    song = tmp_path / "p.wav"
    sf.write(song, _song(22050, 1).T, 22050, subtype="FLOAT")
    run_cli("separate", song, "--checkpoint", checkpoint, "--plugin", plugin, "--sampler", "x0_in_one_step",
            "--out", tmp_path / "o", check=0)
    v, _ = sf.read(tmp_path / "o" / "run" / "p" / "vocals.wav", always_2d=True)
    i, _ = sf.read(tmp_path / "o" / "run" / "p" / "instrumental.wav", always_2d=True)
    mix, _ = sf.read(song, always_2d=True)
    assert np.abs(v + i - mix).max() < 1e-5 and np.abs(i).max() > 0
    p = run_cli("separate", song, "--checkpoint", checkpoint, "--sampler", "x0_in_one_stp", "--plugin", plugin,
                "--out", tmp_path / "o2")
    assert_one_line_error(p, 2, "did you mean 'x0_in_one_step'")


def _ffmpeg_encode(src, dst):
    import subprocess
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), str(dst)], check=True)


def _sum_snr(out_dir, ext, mix):
    parts = [sf.read(out_dir / f"{n}.{ext}", dtype="float64", always_2d=True)[0] for n in ("vocals", "instrumental")]
    total = parts[0] + parts[1]
    n = min(len(total), len(mix))
    return 10 * np.log10(np.sum(mix[:n] ** 2) / max(1e-12, np.sum((total[:n] - mix[:n]) ** 2)))


def test_compressed_inputs_and_formats(checkpoint, tmp_path):
    """mp3/ogg/opus/m4a in; wav (float: the input's depth is a codec's) and mp3 out; sums match within the format."""
    src = tmp_path / "src.wav"
    sf.write(src, _song(44100, 2).T, 44100, subtype="PCM_16")
    inputs = {"mp3": tmp_path / "s_mp3.mp3", "ogg": tmp_path / "s_ogg.ogg", "opus": tmp_path / "s_opus.opus"}
    sf.write(inputs["mp3"], _song(44100, 2).T, 44100, format="MP3")
    sf.write(inputs["ogg"], _song(44100, 2).T, 44100, format="OGG", subtype="VORBIS")
    sf.write(inputs["opus"], _song(48000, 2).T, 48000, format="OGG", subtype="OPUS")
    inputs["m4a"] = tmp_path / "s_m4a.m4a"
    _ffmpeg_encode(src, inputs["m4a"])
    out = tmp_path / "out"
    run_cli("separate", *inputs.values(), "--checkpoint", checkpoint, "--out", out, check=0)
    from toolkit.audio import read
    for kind, path in inputs.items():
        folder = out / "run" / path.stem
        info = sf.info(folder / "vocals.wav")
        mix, rate, _ = read(path)
        assert (info.subtype, info.samplerate, info.channels, info.frames) == ("FLOAT", rate, 2, mix.shape[1]), kind
        assert _sum_snr(folder, "wav", mix.T.astype(np.float64)) > 100, kind  # float WAV: exact up to float32
    run_cli("separate", inputs["mp3"], "--checkpoint", checkpoint, "--out", tmp_path / "mp3", "--format", "mp3", check=0)
    folder = tmp_path / "mp3" / "run" / "s_mp3"
    assert sf.info(folder / "vocals.mp3").format == "MP3"
    mix, _ = sf.read(inputs["mp3"], dtype="float64", always_2d=True)
    assert _sum_snr(folder, "mp3", mix) > 10  # two lossy encodings summed: the codec's precision, not exact


def test_same_names_never_overwrite_and_template(checkpoint, tmp_path, capfd):
    for sub, ext in (("a", "flac"), ("b", "wav"), ("c", "wav")):
        (tmp_path / sub).mkdir()
        sf.write(tmp_path / sub / f"rock.{ext}", _song(22050, 1, seed=ord(sub)).T, 22050)
    out = tmp_path / "out"
    p = _toolkit(capfd, "separate", tmp_path / "a" / "rock.flac", tmp_path / "b" / "rock.wav", "--checkpoint", checkpoint,
                 "--out", out, check=0)
    assert "shares its name" in p.stderr
    assert sorted(x.name for x in (out / "run").iterdir()) == ["rock.flac", "rock.wav"]
    # same name and extension: told apart by folder
    _toolkit(capfd, "separate", tmp_path / "b" / "rock.wav", tmp_path / "c" / "rock.wav", "--checkpoint", checkpoint,
             "--out", out / "2", check=0)
    assert sorted(x.name for x in (out / "2" / "run").iterdir()) == ["b-rock.wav", "c-rock.wav"]
    # a template that cannot tell them apart is refused before any work
    p = _toolkit(capfd, "separate", tmp_path / "a" / "rock.flac", tmp_path / "b" / "rock.wav", "--checkpoint", checkpoint,
                 "--out", out / "3", "--filename", "{stem}.{ext}")
    assert_one_line_error(p, 2, "would both be written to")
    assert not (out / "3").exists()
    assert_one_line_error(_toolkit(capfd, "separate", tmp_path / "b" / "rock.wav", "--checkpoint", checkpoint, "--out", out / "4",
                                   "--filename", "{track}.{ext}"), 2, "needs {stem}")
    assert_one_line_error(_toolkit(capfd, "separate", tmp_path / "b" / "rock.wav", "--checkpoint", checkpoint, "--out", out / "4",
                                   "--filename", "{trak}/{stem}.{ext}"), 2, "unknown field {trak}")
    _toolkit(capfd, "separate", tmp_path / "b" / "rock.wav", "--checkpoint", checkpoint, "--out", out / "5",
             "--filename", "{track}-{stem}.{ext}", check=0)
    assert sorted(x.name for x in (out / "5").iterdir()) == ["rock-instrumental.wav", "rock-vocals.wav"]


def test_a_bad_file_does_not_stop_the_batch(checkpoint, tmp_path):
    (tmp_path / "bad.wav").write_text("not audio")
    sf.write(tmp_path / "good.wav", _song(22050, 1).T, 22050)
    p = run_cli("separate", tmp_path / "bad.wav", tmp_path / "good.wav", "--checkpoint", checkpoint, "--out", tmp_path / "o")
    assert p.returncode == 2 and "bad.wav: not a readable audio file" in p.stderr
    assert "1 of 2 files failed" in p.stderr.strip().splitlines()[-1]
    assert (tmp_path / "o" / "run" / "good" / "vocals.wav").exists() and not (tmp_path / "o" / "run" / "bad").exists()


@pytest.mark.skipif(not CLIP.exists(), reason=f"shared MUSDB18 clip not found at {CLIP}")
def test_evaluate_reads_what_separate_wrote(checkpoint, tmp_path, capfd):
    stem = CLIP / "train" / "Music Delta - 80s Rock.stem.mp4"
    out = tmp_path / "sep"
    _toolkit(capfd, "separate", stem, "--checkpoint", checkpoint, "--out", out, check=0)
    assert (out / "run" / "Music Delta - 80s Rock" / "instrumental.wav").exists()
    printed = _toolkit(capfd, "evaluate", "--estimates", out, "--root", CLIP, "--subset", "train", check=0).stdout
    result = json.loads((out / "results.json").read_text())
    assert np.isfinite(result["model"]["vocals"]["SDR"]) and np.isfinite(result["baseline"]["vocals"]["SDR"])
    # uSDR: the whole-track SDR of the files written, kept beside museval's JSON; both aggregations named
    from toolkit.evaluate import whole_track_sdr
    import musdb
    track = musdb.DB(root=str(CLIP), subsets="train").tracks[0]
    vocals, _ = sf.read(out / "run" / track.name / "vocals.wav", dtype="float32", always_2d=True)
    vocals = vocals if vocals.shape[1] == track.audio.shape[1] else np.repeat(vocals, track.audio.shape[1], axis=1)
    assert result["model"]["vocals"]["uSDR"] == pytest.approx(whole_track_sdr(track.targets["vocals"].audio, vocals), abs=0.05)
    assert result["baseline"]["vocals"]["uSDR"] < result["model"]["vocals"]["uSDR"]
    assert "cSDR" in result["aggregation"]["SDR"] and "whole-track" in result["aggregation"]["uSDR"]
    assert "cSDR" in (out / "results.md").read_text() and "uSDR" in printed and "cSDR" in printed
    # two models' outputs side by side: the user must say which
    _toolkit(capfd, "separate", stem, "--checkpoint", checkpoint, "--out", out, "--filename", "other/{track}/{stem}.{ext}",
             check=0)
    p = _toolkit(capfd, "evaluate", "--estimates", out, "--root", CLIP, "--subset", "train", "--out", tmp_path / "e2")
    assert_one_line_error(p, 2, "point --estimates at one of them")
    _toolkit(capfd, "evaluate", "--estimates", out / "other", "--root", CLIP, "--subset", "train", "--out", tmp_path / "e3",
             "--no-baseline", check=0)
    # refine mode: the model re-generates what another separator wrote, from start_t
    _toolkit(capfd, "evaluate", "--checkpoint", checkpoint, "--refine", out / "other", "--start-t", "0.3", "--steps", "2",
             "--root", CLIP, "--subset", "train", "--out", tmp_path / "e4", "--no-baseline", check=0)
    refined = json.loads((tmp_path / "e4" / "results.json").read_text())
    assert np.isfinite(refined["model"]["vocals"]["SDR"])
    assert_one_line_error(_toolkit(capfd, "evaluate", "--checkpoint", checkpoint, "--refine", out / "other", "--root", CLIP,
                                   "--subset", "train", "--out", tmp_path / "e5"), 2, "--start-t")
    assert_one_line_error(_toolkit(capfd, "evaluate", "--checkpoint", checkpoint, "--refine", tmp_path / "e5", "--start-t",
                                   "0.3", "--root", CLIP, "--subset", "train", "--out", tmp_path / "e6"), 2, "no estimates")


def test_api_layouts_integer_pcm_and_layout_mistakes(checkpoint):
    import tracemalloc

    from toolkit import Separator
    from toolkit.errors import UserError

    sep = Separator.from_checkpoint(checkpoint, seed=0)
    audio = _song(22050, 2, seconds=0.6, seed=5)
    v, i = sep(audio, 22050)
    assert v.shape == i.shape == audio.shape
    vb, ib = sep(torch.from_numpy(np.stack([audio, audio[::-1].copy()])), 22050)  # (batch, channels, samples)
    assert vb.shape == (2, 2, audio.shape[1]) and torch.allclose(ib[0], i, atol=1e-5)
    assert torch.allclose(vb + ib, torch.from_numpy(np.stack([audio, audio[::-1].copy()])), atol=1e-6)
    pcm = np.round(audio * 32767).astype(np.int16)
    vi, ii = sep(pcm, 22050)  # int16 is scaled to [-1, 1]
    assert torch.allclose(vi + ii, torch.from_numpy(pcm.astype(np.float32) / 32768), atol=1e-6)
    assert float(ii.abs().max()) <= 2.0
    vm, im = sep(audio[0], 22050)  # (samples,)
    assert vm.shape == audio[0].shape
    ten_minutes = np.zeros((10 * 60 * 44100, 2), np.float32)  # (samples, channels): a layout mistake
    tracemalloc.start()
    with pytest.raises(UserError, match=r"looks like \(samples, channels\); expected \(channels, samples\).*audio\.T"):
        sep(ten_minutes, 44100)
    assert tracemalloc.get_traced_memory()[1] < 20 * 2 ** 20  # refused before any allocation
    tracemalloc.stop()
    with pytest.raises(UserError, match=r"\(batch, samples, channels\)"):
        sep(torch.zeros(1, 4410, 2), 44100)
    with pytest.raises(UserError, match="expected"):
        sep(np.zeros((1, 1, 2, 10)), 44100)


def test_samples_average_the_instrumental_magnitude(checkpoint, monkeypatch):
    """--samples K: the instrumental magnitude is the mean of K samples' magnitudes (not of their x0)."""
    from toolkit import Separator

    mix = torch.from_numpy(_song(22050, 1, seconds=2.0, seed=4))[None]
    eng1 = Separator.from_checkpoint(checkpoint, steps=2).engine
    eng2 = Separator.from_checkpoint(checkpoint, steps=2, samples=2).engine
    cond, state = eng1.transform.encode(mix)
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(cond.shape, generator=gen) * 2 - 1 for _ in range(2))
    calls = []
    monkeypatch.setattr(eng2, "sample", lambda cond, seeds, progress=None, guess=None: calls.append(seeds) or (a, b)[len(calls) - 1])
    mean_mag = (eng1.transform.magnitude(a, state) + eng1.transform.magnitude(b, state)) / 2
    monkeypatch.setattr(eng1, "sample", lambda cond, seeds, progress=None, guess=None: eng1.transform.normalize(mean_mag, state))
    averaged, reference = eng2.instrumental(mix, [5]), eng1.instrumental(mix, [5])
    assert calls == [[5], [5 + 104_729]]
    assert (averaged - reference).abs().max() < 1e-4 * reference.abs().max()
    in_x0 = eng1.instrumental  # the mean of the x0s instead: a different estimate, so the check above can fail
    monkeypatch.setattr(eng1, "sample", lambda cond, seeds, progress=None, guess=None: (a + b) / 2)
    assert (in_x0(mix, [5]) - reference).abs().max() > 1e-2 * reference.abs().max()


def test_sampling_overrides_from_the_command_line(checkpoint, tmp_path, capfd):
    song = tmp_path / "a.wav"
    sf.write(song, _song(22050, 1, seconds=2.0).T, 22050)
    _toolkit(capfd, "separate", song, "--checkpoint", checkpoint, "--out", tmp_path / "o", "--steps", "2",
             "--clip-x0", "mixture", "--samples", "2", check=0)
    assert (tmp_path / "o" / "run" / "a" / "vocals.wav").exists()
    assert_one_line_error(_toolkit(capfd, "separate", song, "--checkpoint", checkpoint, "--samples", "0", "--out",
                                   tmp_path / "p"), 2, "--samples")
    assert not list((tmp_path / "p").rglob("*.wav"))


def test_sampling_table_script(checkpoint, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("sampling_table", REPO / "scripts" / "sampling_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    root = torch.load(checkpoint, weights_only=True)["meta"]["parts"]["dataset"]["root"]
    argv = ["--checkpoint", f"a-s0={checkpoint}", "--checkpoint", f"a-s1={checkpoint}", "--set", f"test={root}",
            "--steps", "2", "--clip-x0", "mixture", "--tracks", "1", "--out", str(tmp_path / "t")]
    assert script.main(argv) == 0
    table = json.loads((tmp_path / "t" / "table.json").read_text())["test"]
    assert set(table) == {"steps2-clip_mixture-k1"}
    for by_label in table.values():
        assert by_label["a-s0"] == by_label["a-s1"]  # the same checkpoint and seed: the same scores
    scores = table["steps2-clip_mixture-k1"]["a-s0"]
    md = (tmp_path / "t" / "table.md").read_text()
    assert "a (mean of 2)" in md and f"{scores['cSDR_gain']:+.2f} ({scores['uSDR_gain']:+.2f})" in md
    assert script.main(["--checkpoint", "x=/nonexistent.pt", "--set", f"test={root}", "--out", str(tmp_path / "u")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_refine_starts_from_the_given_estimate_noised_to_start_t(checkpoint, monkeypatch):
    """Start 'given': the sampler starts from sqrt(abar) * estimate + sqrt(1 - abar) * noise at start_t's timestep."""
    from toolkit import Separator
    from toolkit.errors import UserError

    mix = torch.from_numpy(_song(22050, 1, seconds=2.0, seed=4))[None]
    given = 0.5 * mix
    sep = Separator.from_checkpoint(checkpoint, start="given", start_t=0.3, steps=2)
    eng = sep.engine
    seen = {}
    monkeypatch.setattr(eng, "sampler", lambda model_fn, diffusion, x_T, **kw: seen.update(x_T=x_T, T=diffusion.num_timesteps) or x_T)
    eng.instrumental(mix, [5], given=given)
    cond, state = eng.transform.encode(mix)
    guess = eng.transform.encode_with(given, state)
    t_s = round(0.3 * (eng.diffusion.num_timesteps - 1))
    abar = float(eng.diffusion.alphas_cumprod[t_s])
    noise = torch.randn(cond.shape[1:], generator=torch.Generator().manual_seed(5))[None]
    assert seen["T"] == t_s + 1  # the truncated process
    torch.testing.assert_close(seen["x_T"], abar ** 0.5 * guess + (1 - abar) ** 0.5 * noise, atol=1e-5, rtol=1e-5)
    with pytest.raises(UserError, match="given"):  # an estimate without start 'given', and 'given' without one
        Separator.from_checkpoint(checkpoint, steps=2).engine.instrumental(mix, [5], given=given)
    with pytest.raises(UserError, match="given"):
        eng.instrumental(mix, [5])
    vocals, inst = sep(mix[0].numpy(), 22050, given=given[0].numpy())  # the API passes it through
    assert torch.allclose(vocals + inst, mix[0], atol=1e-6)
