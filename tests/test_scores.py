"""Whole-track SDR (uSDR) and its aggregation beside museval's cSDR."""
import numpy as np
import pytest

from toolkit.evaluate import add_usdr, results_markdown, whole_track_sdr


def test_whole_track_sdr_known_answers():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((44100, 2))
    assert whole_track_sdr(s, 1.1 * s) == pytest.approx(20.0, abs=1e-6)   # error 0.1 s: 10 log10(1 / 0.01)
    assert whole_track_sdr(s, 0 * s) == pytest.approx(0.0, abs=1e-6)      # silence: error = the reference
    assert whole_track_sdr(np.zeros((10, 2)), np.zeros((10, 2))) == 0.0  # eps: silent and silent is 0 dB, not NaN
    assert whole_track_sdr(s, np.vstack([1.1 * s, s[:5]])) == pytest.approx(20.0, abs=1e-6)  # trailing extra samples


def test_usdr_is_the_mean_over_tracks_and_absent_when_a_track_lacks_it():
    medians = {"vocals": {"SDR": 5.0}, "accompaniment": {"SDR": 9.0}}
    got = add_usdr({k: dict(v) for k, v in medians.items()}, [{"vocals": 1.0, "accompaniment": 2.0},
                                                                {"vocals": 4.0, "accompaniment": 6.0}])
    assert got["vocals"]["uSDR"] == 2.5 and got["accompaniment"]["uSDR"] == 4.0 and got["vocals"]["SDR"] == 5.0
    assert "uSDR" not in add_usdr({k: dict(v) for k, v in medians.items()}, [{"vocals": 1.0}, None])["vocals"]


def test_tables_name_the_aggregation():
    result = {"model": {"vocals": {"SDR": 5.0, "uSDR": 6.0}}, "baseline": {"vocals": {"SDR": 0.0, "uSDR": 0.5}},
              "tracks": 2}
    md = results_markdown(result)
    assert md.splitlines()[2].startswith("| estimate | target | cSDR | SIR | SAR | ISR | uSDR |")
    assert "median over frames, then tracks" in md and "mean over tracks of whole-track SDR" in md
    assert "cSDR +5.00 dB" in md and "uSDR +5.50 dB" in md


def test_an_evaluation_run_again_reads_the_scores_it_kept(tmp_path):
    """Tracks scored before (an interrupted run, a second table) are read back, not separated again: same result."""
    from diffmsst_plugins.datasets.synthetic import synthesize
    from toolkit.data import open_db
    from toolkit.evaluate import evaluate_tracks

    root = synthesize(tmp_path / "synth", tracks=1, test_tracks=2, seconds=2.0, sample_rate=22050, seed=3)
    tracks = list(open_db(root, "test").tracks)
    calls = []

    def half(mixture, rate, track):
        calls.append(track.name)
        return 0.5 * mixture, 0.5 * mixture

    first = evaluate_tracks(tracks, half, tmp_path / "e", save_estimates=False)
    again = evaluate_tracks(tracks, half, tmp_path / "e", save_estimates=False)
    assert len(calls) == 2 and first["model"] == again["model"] and first["baseline"] == again["baseline"]
    assert "uSDR" in again["model"]["vocals"]
