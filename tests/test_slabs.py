"""tomoprior.slabs: slab plans on every scheduler, global decisions, streaming."""

import pickle
import subprocess
import sys

import dask
import dask.array as da
import numpy as np
import pytest

from tomoprior.engine import prepare, reconstruct_dask, run_to_end
from tomoprior.errors import MethodUnavailable, ParameterError
from tomoprior.geometry import TiltGeometry, angles_from_range
from tomoprior.slabs import SlabTask, assemble, check_scheduler, plan_slabs, stream_slabs

pytestmark = pytest.mark.usefixtures("one_thread")

#: what a task may carry beyond its window of the series (plan, geometry, parameters)
MARGIN = 64 * 1024


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.fixture(scope="module")
def client():
    """One two-process LocalCluster for the module (starting one costs seconds)."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def series48():
    """A 48 px series, horizontal axis, with a few soft blobs (no conftest volume: module scope)."""
    import torch

    from tomoprior.operators import make_projector
    from tomoprior.transforms import series_from_canonical, volume_to_canonical

    n = 48
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n),) * 3, indexing="ij")
    rng = np.random.default_rng(4)
    vol = np.zeros((n, n, n), np.float32)
    for _ in range(5):
        c, r = rng.uniform(-0.4, 0.4, 3), rng.uniform(0.12, 0.3, 3)
        d = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
        vol += (d < 1).astype(np.float32) * rng.uniform(0.5, 1.0)
    g = TiltGeometry(angles_from_range(-60, 60, 6), tilt_axis="horizontal")
    A = make_projector(g.angles, volume_to_canonical(vol, g).shape, device="cpu")
    series = series_from_canonical(A(torch.from_numpy(volume_to_canonical(vol, g))).numpy(), g)
    return np.ascontiguousarray(series, np.float32), g


# -- distributed ----------------------------------------------------------------------------------
def test_local_cluster_equals_in_process(client, series48):
    series, g = series48
    ref = run_to_end("sirt", series, g, iterations=8, chunk=16)[0]
    lazy = reconstruct_dask("sirt", series, g, chunk=16, iterations=8)
    got = lazy.compute(scheduler=client)
    assert got.shape == ref.shape
    assert _rel(got, ref) < 1e-5
    # the same plan streamed through the scheduler's address, as to a remote cluster
    plan = plan_slabs("sirt", series, g, chunk=16, iterations=8)
    out, _, prov = assemble(plan, series, scheduler=client.scheduler.address)
    assert _rel(out, ref) < 1e-5
    assert prov["slabs"]["count"] == 3 and prov["slabs"]["scheduler"].startswith("distributed")
    # or through a client that is not dask's default, reading a dask series on the cluster
    lazy_in = da.from_array(series, chunks=(7, 48, 48))
    out, _, _ = assemble(plan_slabs("sirt", lazy_in, g, chunk=16, iterations=8), lazy_in,
                         scheduler=client)
    assert _rel(out, ref) < 1e-5


def test_cluster_reads_a_memory_map_in_each_task(client, series48, tmp_path):
    series, g = series48
    path = tmp_path / "series.npy"
    np.save(path, series)
    mm = np.load(path, mmap_mode="r")
    ref = run_to_end("sirt", series, g, iterations=5, chunk=24)[0]
    arr, plan = reconstruct_dask("sirt", mm, g, chunk=24, iterations=5, return_plan=True)
    assert plan.source is not None  # tasks open the file themselves: no image in a task
    for t in plan.tasks():
        assert len(pickle.dumps(t)) < MARGIN
    assert _rel(arr.compute(scheduler=client), ref) < 1e-5


def test_no_task_carries_more_than_its_slab(series48):
    """Every task pickles to its window of the series (slab + halo) plus a small margin."""
    series, g = series48
    for method, kw in (("sirt", {}), ("cstv", {"lam": 0.05}), ("wbp", {"bin": 2})):
        plan = plan_slabs(method, series, g, chunk=10, iterations=3, **kw)
        for t in plan.tasks():
            window = plan.task_input(t, series)
            assert window.shape[1:] == (t.window.shape[0] * plan.binning,
                                        t.window.shape[1] * plan.binning)
            slab_bytes = window.nbytes
            # the halo is part of the window, nothing more of the series
            rows = (t.outer[1] - t.outer[0]) * plan.binning
            assert slab_bytes <= series.nbytes * rows / series.shape[1] + 1
            assert len(pickle.dumps((t, window))) <= slab_bytes + MARGIN
    # and in the dask graph: no task holds the whole series
    arr = reconstruct_dask("sirt", series, g, chunk=10, iterations=3)
    import cloudpickle

    sizes = [len(cloudpickle.dumps(v)) for v in dict(arr.__dask_graph__()).values()]
    window = 4 * series.shape[0] * (10 + 0) * series.shape[2]
    assert max(sizes) <= window + MARGIN < series.nbytes


# -- global decisions ----------------------------------------------------------------------------
def test_cstv_auto_lambda_is_one_for_the_volume_and_recorded(series48):
    series, g = series48
    arr, plan = reconstruct_dask("cstv", series, g, chunk=12, iterations=6, lam="auto",
                                 return_plan=True)
    d = plan.decisions["lam"]
    assert len(d["samples"]) == 3  # sample slabs spread through the volume
    starts = [s["slab"][0] for s in d["samples"]]
    assert starts == sorted(starts) and starts[0] < 12 and starts[-1] > 24
    lam = d["value"]
    assert lam in [s["lam"] for s in d["samples"]]
    assert all(t.plan.params["lam"] == lam for t in plan.tasks())
    prov = plan.provenance()
    assert prov["parameters"]["lam"] == lam and prov["result"]["lam"] == lam
    assert prov["global_decisions"]["lam"]["samples"][0]["search"]  # the search tables
    # every slab runs with that λ: the steps of each slab say so
    for t in plan.tasks():
        y = t.canonical(plan.task_input(t, series))
        step = next(iter(t.steps(y, t.plan.params, 10**9)))
        assert step.extras["lam"] == lam and step.phase == "iterate"
    assert arr.compute(scheduler="sync").shape == (48, 48, 48)


def test_inr_poses_learned_once_and_shared(series48, monkeypatch):
    series, g = series48
    calls = []
    original = SlabTask.__call__

    def counted(self, window=None):
        calls.append((self.job, self.index))
        return original(self, window)

    monkeypatch.setattr(SlabTask, "__call__", counted)
    small = series[:, ::2, ::2].copy()
    params = dict(iterations=12, learn_pose=True, batch_rays=256, pose_start=0.0,
                  val_fraction=0.0, anchor=False)
    plan = plan_slabs("inr", small, g, chunk=8, **params)
    out, plan, prov = assemble(plan, small, scheduler="threads", workers=2)
    assert [c for c in calls if c[0] == "poses"] == [("poses", 0)]
    assert sorted(c for c in calls if c[0] == "slab") == [("slab", i) for i in range(3)]
    poses = plan.decisions["poses"]
    assert poses["slab"] == [8, 16]  # the central slab
    assert plan.params["learn_pose"] is False
    learned = TiltGeometry.from_dict(poses["geometry"])
    for t in plan.tasks():  # every slab uses the same learned geometry
        np.testing.assert_array_equal(t.plan.geometry.shifts, learned.shifts)
        assert t.plan.geometry.tilt_axis == learned.tilt_axis
    assert np.any(learned.shifts != 0)
    assert prov["result"]["poses"]["shifts"] == poses["poses"]["shifts"]
    assert prov["geometry"] == poses["geometry"]
    assert out.shape == (24, 24, 24) and np.isfinite(out).all()


# -- schedulers and streaming -------------------------------------------------------------------
def test_threads_and_processes_give_the_in_process_result(series48):
    series, g = series48
    plan = plan_slabs("sirt", series, g, chunk=16, iterations=6)
    ref, _, _ = assemble(plan, series)
    threads, _, _ = assemble(plan, series, scheduler="threads", workers=2)
    procs, _, _ = assemble(plan, series, scheduler="processes", workers=2)
    assert _rel(threads, ref) < 1e-5 and _rel(procs, ref) < 1e-5
    lazy = reconstruct_dask("sirt", da.from_array(series, chunks=(8, 48, 48)), g, chunk=16,
                            iterations=6)
    # (dask's own process pool is left out: it would spawn two more interpreters; the
    # LocalCluster test computes the same graph in other processes)
    assert _rel(lazy.compute(scheduler="threads"), ref) < 1e-5


@pytest.mark.parametrize("axis", ["horizontal", "vertical", 180.0, 270.0])
def test_streaming_hands_each_slab_once_in_the_input_frame(series48, axis, monkeypatch):
    series, _ = series48
    series = np.ascontiguousarray(series[:, :40])  # rows != cols: a turned frame shows
    g = TiltGeometry(angles_from_range(-60, 60, 6), tilt_axis=axis)
    computed = []
    original = SlabTask.__call__

    def counted(self, window=None):
        computed.append(self.index)
        return original(self, window)

    monkeypatch.setattr(SlabTask, "__call__", counted)
    plan = plan_slabs("wbp", series, g, chunk=9)
    out = np.full(plan.output_shape, np.nan, np.float32)
    regions = []

    def sink(region, block):
        assert np.isnan(out[region]).all()  # never written twice
        out[region] = block
        regions.append(region)

    stream_slabs(plan, series, sink)
    n = len(plan.slabs())
    assert sorted(computed) == list(range(n)) and len(regions) == n
    along = 1 if plan.turns % 2 == 0 else 2  # slabs run along the tilt axis
    assert all(r[along] != slice(None) and r[3 - along] == slice(None) for r in regions)
    assert all(r[along].start % 9 == 0 for r in regions)  # on a chunk grid, as Zarr needs
    full = run_to_end("wbp", series, g)[0]
    assert out.shape == full.shape
    np.testing.assert_allclose(out, full, rtol=1e-5, atol=1e-5)


def test_fine_axis_and_shifts_read_a_window_only(series48):
    """With a fine axis rotation and shifts a slab reads a few pixels more, not the images."""
    series, g = series48
    rng = np.random.default_rng(1)
    g = g.replace(tilt_axis=7.0, shifts=rng.normal(0, 1.0, (g.n_tilts, 2)))
    plan = plan_slabs("sirt", series, g, chunk=8, iterations=3)
    whole = prepare(series, g).series
    for t in plan.tasks():
        y = t.canonical(plan.task_input(t, series))
        np.testing.assert_allclose(y, whole[:, t.outer[0]:t.outer[1]], rtol=1e-4, atol=1e-4)
        along = 1 if plan.turns % 2 else 0  # the window's side along the axis
        assert t.window.shape[along] < (t.outer[1] - t.outer[0]) + 12 < series.shape[1 + along]
    ref = run_to_end("sirt", series, g, iterations=3, chunk=8)[0]
    assert _rel(assemble(plan, series)[0], ref) < 1e-4


def test_scheduler_errors_are_one_line(series48, monkeypatch):
    with pytest.raises(ParameterError, match="threads, processes or a dask scheduler"):
        check_scheduler("fast")
    series, g = series48
    plan = plan_slabs("wbp", series, g, chunk=24)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(MethodUnavailable, match=r"pip install 'napari-tomoprior\[distributed\]'"):
        stream_slabs(plan, series, lambda r, b: None, scheduler="tcp://127.0.0.1:8786")


def test_importing_tomoprior_does_not_import_distributed():
    code = ("import sys, tomoprior, tomoprior.engine, tomoprior.slabs, tomoprior.cli; "
            "assert 'distributed' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dask_default_scheduler_still_works(series48):
    series, g = series48
    with dask.config.set(scheduler="sync"):
        vol = reconstruct_dask("wbp", series, g, chunk=20)
        assert isinstance(vol, da.Array) and vol.compute().shape == (48, 48, 48)


@pytest.mark.parametrize("axis", ["horizontal", 180.0])
def test_slabs_stream_into_an_ome_zarr_writer(series48, tmp_path, axis):
    pytest.importorskip("zarr")
    from tomoprior import io
    from tomoprior.io import ZarrVolumeWriter, slab_axis, slab_chunks

    series, _ = series48
    series = np.ascontiguousarray(series[:, :44])
    g = TiltGeometry(angles_from_range(-60, 60, 6), tilt_axis=axis)
    plan = plan_slabs("wbp", series, g, chunk=10)
    shape = plan.output_shape
    writer = ZarrVolumeWriter(tmp_path / "v.ome.zarr", shape, np.float32,
                              slab_chunks(shape, slab_axis(g.tilt_axis), 10))
    with writer:
        _, prov = stream_slabs(plan, series, writer.write, scheduler="threads", workers=2)
        writer.close(provenance=prov)
    back = io.read(tmp_path / "v.ome.zarr").data
    np.testing.assert_allclose(np.asarray(back), run_to_end("wbp", series, g)[0], rtol=1e-5,
                               atol=1e-5)


# -- command line -----------------------------------------------------------------------------------
@pytest.fixture
def series_tif(tmp_path, series48):
    from tomoprior import io

    series, g = series48
    path = tmp_path / "tilts.tif"
    io.write_tilt_series(path, series, g)
    return path


def test_cli_scheduler_threads_equals_in_process(series_tif, tmp_path, capsys):
    import json

    from tomoprior import io
    from tomoprior.cli import main

    common = ["reconstruct", str(series_tif), "--method", "sirt", "--iterations", "5",
              "--chunk", "16"]
    assert main([*common, "-o", str(tmp_path / "ref.mrc")]) == 0
    assert main([*common, "-o", str(tmp_path / "thr.mrc"), "--scheduler", "threads", "--json"]) == 0
    captured = capsys.readouterr()
    assert "slab 3/3" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["slabs"] == {"chunk": 16, "overlap": 0, "count": 3, "scheduler": "threads"}
    ref = io.read(tmp_path / "ref.mrc").load()
    got = io.read(tmp_path / "thr.mrc").load()
    assert _rel(got, ref) < 1e-5
    assert io.read_provenance(tmp_path / "thr.mrc")["slabs"]["count"] == 3


def test_cli_chunks_stream_into_ome_zarr(series_tif, tmp_path, capsys):
    pytest.importorskip("zarr")
    from tomoprior import io
    from tomoprior.cli import main

    out = tmp_path / "vol.ome.zarr"
    rc = main(["reconstruct", str(series_tif), "--method", "wbp", "--chunk", "10", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    series, g = io.read(series_tif).load(), io.read(series_tif).geometry
    np.testing.assert_allclose(np.asarray(io.read(out).data), run_to_end("wbp", series, g)[0],
                               rtol=1e-5, atol=1e-5)
    prov = io.read_provenance(out)
    assert prov["method"] == "wbp" and prov["slabs"]["count"] == 5


def test_cli_scheduler_errors_are_one_line(series_tif, tmp_path, capsys, monkeypatch):
    from tomoprior.cli import main

    base = ["reconstruct", str(series_tif), "--method", "wbp", "-o", str(tmp_path / "v.mrc")]
    assert main([*base, "--scheduler", "threads"]) == 2
    assert "give --chunk N too" in capsys.readouterr().err
    assert main([*base, "--chunk", "8", "--scheduler", "quick"]) == 2
    assert "threads, processes or a dask scheduler address" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert main([*base, "--chunk", "8", "--scheduler", "tcp://127.0.0.1:8786"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'napari-tomoprior[distributed]'" in err[0]


def test_cli_chunked_auto_lambda_is_chosen_once(series_tif, tmp_path, capsys):
    from tomoprior import io
    from tomoprior.cli import main

    out = tmp_path / "v.mrc"
    rc = main(["reconstruct", str(series_tif), "--method", "cstv", "--iterations", "4",
               "--chunk", "16", "--param", "lam=auto", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "choosing λ on sample slabs" in capsys.readouterr().err
    prov = io.read_provenance(out)
    lam = prov["global_decisions"]["lam"]
    assert len(lam["samples"]) == 3 and prov["parameters"]["lam"] == lam["value"]


def test_chunked_run_in_process_chooses_the_same_single_lambda(series48):
    from tomoprior.engine import run

    series, g = series48
    rec = run("cstv", series, g, chunk=12, iterations=6, every=6, lam="auto")
    steps = list(rec)
    search = [s for s in steps if s.phase == "lambda search"]
    assert search and all(s.volume.shape == (48, 48, 48) and s.chunk is None for s in search)
    fits = [s for s in steps if s.phase == "iterate"]
    lam = rec.decisions["lam"]["value"]
    assert [s.chunk for s in fits] == [(i, 4) for i in range(4)]
    assert {s.extras["lam"] for s in fits} == {lam}  # one λ for every slab
    assert rec.provenance()["global_decisions"]["lam"]["value"] == lam
    plan = plan_slabs("cstv", series, g, chunk=12, iterations=6, lam="auto")
    plan = plan.decide_with_dask(series, "sync")
    assert plan.decisions["lam"]["value"] == lam  # the same samples, the same choice


def test_cli_chunked_inr_writes_the_poses_learned_once(series_tif, tmp_path, capsys):
    import json

    from tomoprior import io
    from tomoprior.cli import main

    out = tmp_path / "v.tif"
    rc = main(["reconstruct", str(series_tif), "--method", "inr", "--iterations", "10",
               "--bin", "2", "--chunk", "8", "-o", str(out), "--json",
               "--param", "learn_pose=true", "--param", "batch_rays=256",
               "--param", "pose_start=0", "--param", "val_fraction=0", "--param", "anchor=false"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "learning the alignment on the central slab" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    poses = summary["global_decisions"]["poses"]
    assert poses["slab"] == [8, 16] and summary["parameters"]["learn_pose"] is False
    report = json.loads((tmp_path / "v_alignment.json").read_text())["report"]
    assert report["learned_on_slab"] == [8, 16] and report["binning"] == 2
    assert (tmp_path / "v_alignment.xf").is_file()
    assert io.read_provenance(out)["result"]["poses"]["shifts"] == poses["poses"]["shifts"]


def test_per_tilt_axis_is_refused_with_slabs_in_one_line(series_tif, tmp_path, capsys, series48):
    """The poses learned on one slab fold into a geometry with a single tilt axis: per-tilt
    rotations would be dropped without a word, so a chunked run refuses them."""
    from tomoprior.cli import main
    from tomoprior.errors import ParameterError

    series, g = series48
    with pytest.raises(ParameterError, match="per_tilt_axis cannot be carried across slabs"):
        plan_slabs("inr", series, g, chunk=8, learn_pose=True, per_tilt_axis=True)
    plan_slabs("inr", series, g, chunk=8, learn_pose=False, per_tilt_axis=True)  # nothing learned
    from tomoprior.engine import run

    with pytest.raises(ParameterError, match="per_tilt_axis"):  # in process too
        run("inr", series, g, chunk=8, learn_pose=True, per_tilt_axis=True)
    run("inr", series, g, chunk=10**6, learn_pose=True, per_tilt_axis=True)  # one slab: fine
    out = tmp_path / "v.tif"
    rc = main(["reconstruct", str(series_tif), "--method", "inr", "--chunk", "8", "-o", str(out),
               "--param", "learn_pose=true", "--param", "per_tilt_axis=true"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "per_tilt_axis" in err[0] and not out.exists()


def test_chunked_run_in_process_learns_the_poses_once(series48):
    from tomoprior.engine import run

    series, g = series48
    small = series[:, ::2, ::2].copy()
    params = dict(iterations=12, learn_pose=True, batch_rays=256, pose_start=0.0,
                  val_fraction=0.0, anchor=False)
    rec = run("inr", small, g, chunk=8, every=12, **params)
    steps = list(rec)
    learning = [s for s in steps if s.phase == "pose learning"]
    fits = [s for s in steps if s.phase == "iterate" and s.chunk is not None]
    assert learning and [s.chunk for s in fits] == [(0, 3), (1, 3), (2, 3)]
    decided = rec.decisions["poses"]
    assert decided["slab"] == [8, 16]
    assert all(s.poses == decided["poses"] for s in fits)  # the same poses for every slab
    assert steps[-1].geometry == decided["geometry"]
    assert rec.provenance()["global_decisions"]["poses"]["slab"] == [8, 16]
    plan = plan_slabs("inr", small, g, chunk=8, **params).decide_with_dask(small, "sync")
    np.testing.assert_allclose(plan.decisions["poses"]["poses"]["shifts"],
                               decided["poses"]["shifts"], atol=1e-3)


def test_tasks_can_open_the_file_themselves(series_tif, series48):
    series, g = series48
    arr, plan = reconstruct_dask("sirt", series, g, chunk=16, iterations=4, source=str(series_tif),
                                 return_plan=True)
    assert type(plan.source).__name__ == "FileSource"
    assert all(len(pickle.dumps(t)) < MARGIN and plan.task_input(t, series) is None
               for t in plan.tasks())
    ref = run_to_end("sirt", series, g, iterations=4)[0]
    assert _rel(arr.compute(scheduler="sync"), ref) < 1e-5
