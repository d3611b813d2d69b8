"""The whole attack (paper §2) end to end on a small real-image game, resuming, and Bob/Alice separation."""
import ast
import dataclasses
import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest

import empirical
from empirical.alice import game_in_memory
from empirical.data import bundled_images
from empirical.encoder import preset
from empirical.evaluate import global_perm_share, local_perm_share, share_matched, true_matching
from empirical.extraction import ExtractConfig, params_from_key
from empirical.game import Game
from empirical.pipeline import STAGES, AttackConfig, run_attack
from empirical.psim import PsimConfig

N = 300
# 128 px (64 patches: with 16 the boosting stalls), hidden 128, and small training budgets.
# Measured with this seed: p-sim balanced accuracy 0.69, first matching 8.0% (chance 0.33%),
# boosting 93% after 5 rounds, final matching 100%. Most seeds get there; a few need more than
# 12 boosting rounds, hence boost_rounds=40.
CFG = AttackConfig(
    seed=1, candidates=10, boost_rounds=40,
    psim=PsimConfig(steps=500, batch=256, width=64, n_encoders=4, images_per_encoder=128),
    # short fits whiten less (a floor of 3e-2): with few steps a stronger whitening fits worse
    extract=ExtractConfig(steps=60, images_per_step=16, whiten=3e-2, refine_whiten=3e-2, refine_steps=60,
                          refine_images_per_step=16, seed=1),
)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def game():
    fam = preset("neuracrypt-7", image_size=128, patch=16, hidden=128, bn_batch=128)
    imgs = bundled_images(N, 128, seed=1, patch=16)
    return game_in_memory(imgs, [f"{i:04d}.png" for i in range(N)], fam, N, seed=1)


@pytest.fixture(scope="module")
def full_run(game, tmp_path_factory):
    """One run from scratch with a work_dir; later tests resume from copies of it."""
    g, _ = game
    work = tmp_path_factory.mktemp("work")
    seen = []
    result = run_attack(g, CFG, np, quiet=True, work_dir=work, on_stage=seen.append)
    return work, result, seen


def stage_files(work: Path, name: str) -> list:
    # <work_dir>/<fingerprint>/<stage>.npz, or <stage>-<config hash>.npz
    return [p for p in work.rglob("*.npz") if p.name == f"{name}.npz" or p.name.startswith(f"{name}-")]


def copy_work(full_run, tmp_path) -> Path:
    dst = tmp_path / "work"
    shutil.copytree(full_run[0], dst)
    return dst


def assert_same_result(a, b):
    np.testing.assert_array_equal(a.order, b.order)
    np.testing.assert_array_equal(a.pi, b.pi)
    np.testing.assert_array_equal(a.matching, b.matching)
    pa, pb = params_from_key(a.encoder, np), params_from_key(b.encoder, np)
    assert set(pa) == set(pb)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])
    for sa, sb in zip(a.stages, b.stages, strict=True):
        assert sa.name == sb.name
        if sa.matching is not None:
            np.testing.assert_array_equal(sa.matching, sb.matching)


def test_end_to_end_breaks_the_game(game, full_run):
    g, secrets = game
    _, result, seen = full_run
    assert [s.name for s in result.stages] == list(STAGES)
    assert [s.name for s in seen] == list(STAGES)  # on_stage saw each stage as it finished
    assert not any(s.info.get("resumed") for s in result.stages)
    truth = true_matching(g, secrets)
    share = {s.name: share_matched(s.matching, truth) for s in result.stages if s.matching is not None}
    assert share["first"] >= 3 / N  # weak but far above chance (1 / N)
    assert share["boost"] >= 0.8
    assert share["final"] >= 0.97
    assert share["rescore"] >= share["final"]  # re-scoring the close calls loses nothing here
    assert share_matched(result.matching, truth) == share["rescore"]
    psim = result.stages[1].info
    assert psim["balanced_accuracy"] > 0.6 and psim["loss_last"] < psim["loss_first"]
    local, common = local_perm_share(result.order, secrets.perms)
    assert local >= 0.95
    assert global_perm_share(result.pi, common) >= 0.8  # measured 1.0 (all 64 positions)
    assert result.encoder.config == g.config
    sub = result.submission(g)
    assert sorted(sub.values(), key=lambda f: int(f[:-4])) == g.files
    assert sum(secrets.answer[i] == f for i, f in sub.items()) / N == share["rescore"]
    assert all(s.seconds >= 0 for s in result.stages)


def test_every_stage_is_saved(full_run):
    work = full_run[0]
    for name in STAGES:
        assert len(stage_files(work, name)) == 1, name


def test_resume_after_losing_stages_and_an_interruption(game, full_run, tmp_path):
    """The later stages' files are deleted; a rerun recomputes 'boost' from the saved 'first' and is
    interrupted right after it (on_stage raises); a third run resumes there. The result equals
    the uninterrupted run from scratch."""
    work = copy_work(full_run, tmp_path)
    for name in ("boost", "extract", "final", "rescore"):
        for p in stage_files(work, name):
            p.unlink()
    finished = []

    def stop_after_boost(res):
        finished.append(res)
        if res.name == "boost":
            raise Interrupt

    with pytest.raises(Interrupt):
        run_attack(game[0], CFG, np, quiet=True, work_dir=work, on_stage=stop_after_boost)
    assert [r.name for r in finished] == ["align", "psim", "first", "boost"]
    assert [bool(r.info.get("resumed")) for r in finished] == [True, True, True, False]
    np.testing.assert_array_equal(finished[-1].matching, full_run[1].stages[3].matching)
    assert stage_files(work, "boost") and not any(stage_files(work, n) for n in ("extract", "final", "rescore"))
    resumed = run_attack(game[0], CFG, np, quiet=True, work_dir=work)
    for name in STAGES:
        assert len(stage_files(work, name)) == 1, name
    flags = {s.name: bool(s.info.get("resumed")) for s in resumed.stages}
    assert flags == {"align": True, "psim": True, "first": True, "boost": True, "extract": False, "final": False,
                     "rescore": False}
    assert_same_result(resumed, full_run[1])
    # a resumed stage keeps what the table needs: its info, its matching and its arrays
    full = {s.name: s for s in full_run[1].stages}
    for s in resumed.stages:
        assert {k: v for k, v in s.info.items() if k != "resumed"} == full[s.name].info
    np.testing.assert_array_equal(resumed.stages[2].arrays["candidates"], full["first"].arrays["candidates"])
    np.testing.assert_array_equal(resumed.stages[3].arrays["history"], full["boost"].arrays["history"])


def test_stop_after_boost_resumes_and_keeps_the_embeddings(game, full_run, tmp_path):
    """``stop_after="boost"`` ends there (from saved stages here) with the same matching and pi."""
    work = copy_work(full_run, tmp_path)
    part = run_attack(game[0], CFG, np, quiet=True, work_dir=work, stop_after="boost")
    assert [s.name for s in part.stages] == ["align", "psim", "first", "boost"]
    assert part.encoder is None
    np.testing.assert_array_equal(part.pi, full_run[1].pi)
    np.testing.assert_array_equal(part.matching, full_run[1].stages[3].matching)
    n, P = len(game[0].files), game[0].config.n_patches
    assert part.patch_emb.shape[:2] == part.row_emb.shape[:2] == (n, P)
    np.testing.assert_allclose(part.patch_emb, full_run[1].patch_emb)
    with pytest.raises(ValueError):
        run_attack(game[0], CFG, np, quiet=True, stop_after="extract")


def test_sketched_distances_give_the_exact_final_matching(game, full_run, tmp_path, monkeypatch):
    """With T''s distances taken on a sketch of 8 values per row (of 128), extraction and the final
    stage (rerun from boosting's saved result) end with the matching of the exact distances."""
    from empirical import sketch

    work = copy_work(full_run, tmp_path)
    for name in ("extract", "final", "rescore"):
        for f in stage_files(work, name):
            f.unlink()
    monkeypatch.setattr(sketch, "EXACT_FLOATS", 0)
    monkeypatch.setattr(sketch, "SKETCH_FLOATS", 8 * game[0].config.n_patches)
    assert sketch.sketched(len(game[0].files), game[0].config.n_patches, game[0].config.hidden)
    again = run_attack(game[0], CFG, np, quiet=True, work_dir=work)
    exact = {s.name: s for s in full_run[1].stages}
    for s in again.stages[4:]:
        assert not s.info.get("resumed")
        ref = exact[s.name]
        if ref.matching is not None:
            assert np.mean(s.matching == ref.matching) >= 0.99
    np.testing.assert_array_equal(again.matching, full_run[1].matching)
    again_final = {s.name: s for s in again.stages}["final"]
    assert again_final.info["used"] == exact["final"].info["used"] == "extracted encoder"
    assert again_final.info["median_margin_extracted"] == pytest.approx(
        exact["final"].info["median_margin_extracted"], rel=0.2)


def test_a_fit_found_worthless_after_it_ran_gets_no_refit_and_says_why(game, full_run, tmp_path, monkeypatch):
    """When the probe passes during the fit but the fitted T' matches the held-back pairs below the
    chance bar (scripted here: right at every look but the last), extraction (rerun from boosting's
    saved result) runs no refit, its printed note says why, and the final stage keeps boosting's
    matching without trying T'."""
    from empirical import extraction
    from empirical.report import _note, score_stages

    work = copy_work(full_run, tmp_path)
    for name in ("extract", "final", "rescore"):
        for f in stage_files(work, name):
            f.unlink()
    real, looks = extraction.held_out_matching, []

    def last_look_fails(*args):
        shares = real(*args)
        looks.append(shares)
        return shares if len(looks) < 1 + len(extraction.PROBE_AT) else {**shares, "rows": 0.0, "patch_means": 0.0}

    monkeypatch.setattr(extraction, "held_out_matching", last_look_fails)
    # 300 pairs: the default tenth holds back none, so no probe would look
    cfg = dataclasses.replace(CFG, extract=dataclasses.replace(CFG.extract, holdout=0.2))
    again = run_attack(game[0], cfg, np, quiet=True, work_dir=work)
    got = {s.name: s for s in again.stages}
    info = got["extract"].info
    assert len(looks) == 1 + len(extraction.PROBE_AT) and "refine_steps_run" not in info
    assert info["stopped"].startswith("fitted (") and "no refit" in info["stopped"]
    assert [p["right"] >= p["bar"] for p in info["probes"]] == [True] * len(extraction.PROBE_AT) + [False]
    np.testing.assert_array_equal(again.matching, got["boost"].matching)
    assert got["final"].info["used"].startswith("boosting (extraction gave up")
    rec = next(r for r in score_stages(again, game[0], None) if r["stage"] == "extract")
    assert "no refit" in _note(rec)


def test_two_members_give_the_first_fit_beside_a_second_and_submit_their_mean(game, full_run, tmp_path,
                                                                              monkeypatch):
    """``ExtractConfig.members`` 2 (extraction rerun from boosting's saved result): the first member is
    the one-fit run's T' bit for bit, the second is fitted from the next seed, each reports its own
    fits, and the T' the attack hands on is their mean, one network twice as wide inside."""
    work = copy_work(full_run, tmp_path)
    for name in ("extract", "final", "rescore"):
        for f in stage_files(work, name):
            f.unlink()
    cfg = dataclasses.replace(CFG, extract=dataclasses.replace(CFG.extract, members=2))
    again = run_attack(game[0], cfg, np, quiet=True, work_dir=work)
    one = params_from_key(full_run[1].encoder, np)
    assert again.encoder.widths == tuple(2 * w for w in full_run[1].encoder.widths)
    both = params_from_key(again.encoder, np)
    w0 = len(one["W0"])
    np.testing.assert_array_equal(both["W0"][:w0], one["W0"])  # the first member is the one-fit T'
    np.testing.assert_array_equal(both["Wm"][:, :one["Wm"].shape[1]], one["Wm"] / 2)
    assert not np.allclose(both["W0"][w0:], one["W0"])  # another seed, another fit
    info = {s.name: s for s in again.stages}["extract"].info
    single = {s.name: s for s in full_run[1].stages}["extract"].info
    assert len(info["members"]) == 2 and info["members"][0] == {k: single[k] for k in info["members"][0]}
    assert info["members"][1]["steps_run"] > 0 and "refine_steps_run" in info["members"][1]
    assert share_matched(again.matching, true_matching(*game)) == 1.0

    # Interrupted in the second fit's refit and run again: both fits' finished parts are read back
    # (the second's under names ending in -1), and the mean is the uninterrupted one bit for bit.
    from empirical.stages import extract as extract_stage

    work = copy_work(full_run, tmp_path / "interrupted")
    for name in ("extract", "final", "rescore"):
        for f in stage_files(work, name):
            f.unlink()
    real, calls = extract_stage.refine_encoder, []

    def second_refit_stops(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_stage, "refine_encoder", second_refit_stops)
    with pytest.raises(Interrupt):
        run_attack(game[0], cfg, np, quiet=True, work_dir=work)
    monkeypatch.setattr(extract_stage, "refine_encoder", real)
    resumed = run_attack(game[0], cfg, np, quiet=True, work_dir=work)
    assert set({s.name: s for s in resumed.stages}["extract"].info["resumed_parts"]) >= {
        "fit-done", "refit-matching", "fit-done-1", "refit-matching-1"}
    assert_same_result(resumed, again)


@pytest.mark.parametrize("sketched", [False, True])
def test_matchings_on_the_candidate_graph_end_where_the_dense_ones_do(game, full_run, tmp_path, monkeypatch, sketched):
    """With every matching from boosting on solved on the candidate graph (the threshold lowered to
    0), boosting, extraction and the final stage (rerun from the first matching's saved result) end
    with the dense run's matchings, with the distances taken exactly or on a sketch."""
    from empirical import candidate_graph, sketch

    work = copy_work(full_run, tmp_path)
    for name in ("boost", "extract", "final", "rescore"):
        for f in stage_files(work, name):
            f.unlink()
    monkeypatch.setattr(candidate_graph, "GRAPH_MIN_N", 0)
    if sketched:
        monkeypatch.setattr(sketch, "EXACT_FLOATS", 0)
        monkeypatch.setattr(sketch, "SKETCH_FLOATS", 8 * game[0].config.n_patches)
    again = run_attack(game[0], CFG, np, quiet=True, work_dir=work)
    dense = {s.name: s for s in full_run[1].stages}
    got = {s.name: s for s in again.stages}
    solves = got["boost"].info["solves"]  # early rounds' graphs may admit no full matching: solved densely then
    assert "dense" not in solves and solves["graph"] >= 3, solves
    assert got["final"].info["solve"] == "graph"
    np.testing.assert_array_equal(got["boost"].matching, dense["boost"].matching)
    np.testing.assert_array_equal(again.matching, full_run[1].matching)
    if not sketched:
        assert got["final"].info["median_margin_extracted"] == pytest.approx(
            dense["final"].info["median_margin_extracted"], rel=1e-3)
        assert got["boost"].info["median_margin"] == pytest.approx(dense["boost"].info["median_margin"], rel=1e-3)


def test_a_different_game_does_not_resume(game, full_run, tmp_path):
    work = copy_work(full_run, tmp_path)
    g = game[0]
    other = dataclasses.replace(g, encodings=g.encodings[::-1].copy(), files=g.files)
    seen = []

    def stop(res):
        seen.append(res)
        raise Interrupt

    with pytest.raises(Interrupt):
        run_attack(other, CFG, np, quiet=True, work_dir=work, on_stage=stop)
    assert seen[0].name == "align" and not seen[0].info.get("resumed")


# --- Bob never sees Alice's secrets ------------------------------------------------------------

def test_run_attack_takes_only_what_bob_has():
    params = list(inspect.signature(run_attack).parameters)
    assert params[:3] == ["game", "cfg", "xp"]
    assert not any(w in p.lower() for p in params for w in ("key", "secret", "answer", "perm", "truth"))
    fields = {f.name for f in dataclasses.fields(Game)}
    assert fields == {"config", "ids", "originals", "files", "encodings", "path_list"}


def test_game_in_memory_hands_bob_nothing_secret():
    fam = preset("neuracrypt-7", image_size=32, patch=8, hidden=8, bn_batch=4)
    g, secrets = game_in_memory(bundled_images(6, 32, seed=0, patch=8), [f"{i}.png" for i in range(6)], fam, 5)
    assert g.path_list == sorted(secrets.answer)  # the published list is sorted, not in file order
    for f in dataclasses.fields(Game):
        v = getattr(g, f.name)
        assert not isinstance(v, (dict, type(secrets), type(secrets.key)))


ATTACK_MODULES = ["alignment", "psim", "isim", "boosting", "graph_perm", "extraction", "fit_budget", "holdout",
                  "encodings", "matched", "passes", "whitening", "batch_sample", "sketch",
                  "nearest", "tprime", "pipeline", "store", "assignment", "moments", "mlp",
                  *(f"stages/{name}" for name in STAGES), "stages/base", "stages/__init__"]
FORBIDDEN_NAMES = {"Secrets", "load_secrets", "save_secrets", "read_answer_key", "load_key", "true_matching",
                   "local_perm_share", "alice_encode", "check_secrets", "read_perms"}
FORBIDDEN_ATTRS = {"answer", "perms", "secrets"}
# Modules that hold or read Alice's side: the attack imports nothing from them.
SECRET_MODULES = {"evaluate", "secret_files", "alice", "referee", "report", "keys"}


@pytest.mark.parametrize("module", ATTACK_MODULES)
def test_attack_modules_do_not_touch_secrets(module):
    path = Path(empirical.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            names = {a.name for a in node.names}
            assert not SECRET_MODULES & set(mod.split(".")), f"{module} imports from {mod}"
            assert not SECRET_MODULES & names, f"{module} imports {names & SECRET_MODULES}"
            if mod.split(".")[-1] == "game":
                assert names <= {"Game", "GameError", "content_digest"}, f"{module} imports {names} from game"
            assert not names & FORBIDDEN_NAMES, f"{module} imports {names & FORBIDDEN_NAMES}"
        elif isinstance(node, ast.Import):
            assert not any(SECRET_MODULES & set(a.name.split(".")) for a in node.names), module
        elif isinstance(node, ast.Name):
            assert node.id not in FORBIDDEN_NAMES, f"{module} uses {node.id}"
        elif isinstance(node, ast.Attribute):
            assert node.attr not in FORBIDDEN_ATTRS | FORBIDDEN_NAMES, f"{module} uses .{node.attr}"
