"""Registration from Python: ants_registration is the tool (same files, byte for byte), register()
with a preset, and the result's transforms applied, inverted, differentiated and written."""
import filecmp
import os
import subprocess

import numpy as np
import pytest

import gigareg


def stage_args(fixed, moving, out):
    """A small two-stage command (affine MI, greedy CC) on the CPU backend."""
    return ["-d", "3", "-o", f"[{out}reg_,{out}warped.nii.gz]", "-r", f"[{fixed},{moving},1]",
            "-t", "Affine[0.1]", "-m", f"MI[{fixed},{moving},1,16]", "-c", "[12x6,1e-6,10]",
            "-f", "2x1", "-s", "1x0vox",
            "-t", "Greedy[0.25,1,0.5]", "-m", f"CC[{fixed},{moving},1,2]", "-c", "[10x6,1e-6,10]",
            "-f", "2x1", "-s", "1x0vox", "--device", "cpu", "-v", "0"]


def run_cli(cli, args):
    r = subprocess.run([cli, "register"] + args, capture_output=True, text=True)
    return r


def assert_same_files(a, b, cli=None, moving=None):
    """Every file of directory a is in b with the same bytes. HDF5 files (the composite
    transforms) hold their objects' modification times, so two runs of the tool itself differ
    there: they are compared by what they do, the image `gigareg apply` makes with them."""
    names_a = sorted(os.listdir(a))
    assert names_a == sorted(os.listdir(b))
    assert names_a, "no output"
    for name in names_a:
        if name.endswith(".h5"):
            outputs = []
            for d in (a, b):
                out = os.path.join(d, name + ".applied.nii")
                r = subprocess.run([cli, "apply", "-i", moving, "-r", moving, "-o", out, "-t",
                                    os.path.join(d, name)], capture_output=True, text=True)
                assert r.returncode == 0, r.stderr
                outputs.append(out)
            assert filecmp.cmp(*outputs, shallow=False), name
            for out in outputs:
                os.remove(out)
        else:
            assert filecmp.cmp(os.path.join(a, name), os.path.join(b, name), shallow=False), name


def test_ants_registration_reproduces_the_cli_byte_for_byte(pair, cli, tmp_path):
    out_cli, out_py = f"{tmp_path}/cli/", f"{tmp_path}/py/"
    extra = ["--write-composite-transform", "1"]
    r = run_cli(cli, stage_args(pair["fixed"], pair["moving"], out_cli) + extra)
    assert r.returncode == 0, r.stderr
    summaries = []
    result = gigareg.ants_registration(stage_args(pair["fixed"], pair["moving"], out_py) + extra,
                                       summary=summaries.append)
    assert_same_files(out_cli, out_py, cli, pair["moving"])
    assert sorted(os.listdir(out_py)) == ["reg_0GenericAffine.mat", "reg_1InverseWarp.nii.gz",
                                          "reg_1Warp.nii.gz", "reg_Composite.h5",
                                          "reg_InverseComposite.h5", "reg_QC.png", "warped.nii.gz"]
    # the summary is the tool's stdout (but for the paths and the times)
    assert len(summaries) == 1 and "outputs:" in summaries[0]
    assert len(summaries[0].splitlines()) == len(r.stdout.splitlines())
    # the result holds what was written
    assert result.warp is not None and result.warp.array.shape[0] == 3
    np.testing.assert_array_equal(result.warp.array,
                                  gigareg.read_displacement_field(out_cli + "reg_1Warp.nii.gz").array)
    assert result.warped is not None


def test_ants_registration_takes_one_string_and_the_short_form(pair, cli, tmp_path):
    f, m = pair["fixed"], pair["moving"]
    short = f"--fixed {f} --moving {m} --preset rigid --device cpu -v 0 --no-qc"
    r = run_cli(cli, short.split() + ["-o", f"{tmp_path}/cli/"])
    assert r.returncode == 0, r.stderr
    result = gigareg.ants_registration(f"gigareg register {short} -o {tmp_path}/py/", summary=lambda s: None)
    assert_same_files(f"{tmp_path}/cli/", f"{tmp_path}/py/")
    assert result.warp is None
    assert np.isclose(np.linalg.det(result.affine[:3, :3]), 1.0, atol=1e-6)  # rigid


def test_errors_carry_the_cli_message(pair, cli, tmp_path):
    cases = [
        (["--fixed", pair["fixed"], "--moving", pair["moving"], "-o", f"{tmp_path}/x/", "--bogus", "1"], ValueError),
        (["--fixed", f"{tmp_path}/missing.nii.gz", "--moving", pair["moving"], "-o", f"{tmp_path}/x/",
          "--preset", "affine"], OSError),
        (["--fixed", pair["fixed"], "--moving", pair["moving"], "-o", f"{tmp_path}/x/",
          "--preset", "nonesuch"], ValueError),
    ]
    for args, kind in cases:
        r = run_cli(cli, args)
        assert r.returncode == 1
        with pytest.raises(kind) as e:
            gigareg.ants_registration(args, summary=lambda s: None)
        assert r.stderr.strip().splitlines()[-1] == "gigareg: error: " + str(e.value)
    assert not os.path.exists(f"{tmp_path}/x") or not os.listdir(f"{tmp_path}/x")


def test_progress_callback_and_stopping(pair, tmp_path):
    reports = []
    args = stage_args(pair["fixed"], pair["moving"], f"{tmp_path}/a/")
    gigareg.ants_registration(args, progress=reports.append, summary=lambda s: None)
    assert reports and reports[0]["stage"] == 0 and reports[0]["iteration"] == 0
    assert {r["transform"] for r in reports} == {"Affine", "Greedy"}
    assert all(isinstance(r["loss"], float) for r in reports)

    # an exception raised by the callback stops the registration, and no output is left
    def stop(report):
        if report["stage"] == 1:
            raise KeyboardInterrupt("stop here")
    with pytest.raises(KeyboardInterrupt, match="stop here"):
        gigareg.ants_registration(stage_args(pair["fixed"], pair["moving"], f"{tmp_path}/b/"),
                                  progress=stop, summary=lambda s: None)
    assert not os.path.exists(f"{tmp_path}/b") or os.listdir(f"{tmp_path}/b") == []


def test_register_in_memory(pair, cli, tmp_path):
    fixed = gigareg.read_image(pair["fixed"])
    moving = gigareg.read_image(pair["moving"])
    reports = []
    result = gigareg.register(fixed, moving, preset="greedy", device="cpu", progress=reports.append)
    assert reports
    assert result.warp.same_grid(fixed) and result.warped.same_grid(fixed)
    assert result.inverse_warp is not None
    # closer than before
    before = np.abs(moving.array - fixed.array).mean()
    after = np.abs(result.warped.array - fixed.array).mean()
    assert after < 0.5 * before
    # apply() resamples as the registration did
    again = result.apply(moving)
    np.testing.assert_allclose(again.array, result.warped.array, atol=1e-3)
    # Jacobian: positive almost everywhere, the tool's numbers
    jac = result.jacobian()
    assert jac.same_grid(fixed) and (jac.array > 0).mean() > 0.99
    # write() writes what the tool writes; `gigareg apply` on them gives apply()'s image
    written = result.write(f"{tmp_path}/mem_", warped=f"{tmp_path}/mem_warped.nii.gz")
    assert os.path.exists(written["affine"]) and os.path.exists(written["warp"])
    out = f"{tmp_path}/applied.nii.gz"
    r = subprocess.run([cli, "apply", "-i", pair["moving"], "-r", pair["fixed"], "-o", out,
                        "-t", written["warp"], "-t", written["affine"]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(gigareg.read_image(out).array, again.array, atol=1e-3)
    # read back, the result is the same transform
    loaded = gigareg.RegistrationResult.from_files(f"{tmp_path}/mem_", fixed=fixed)
    np.testing.assert_allclose(loaded.affine, result.affine, atol=1e-9)
    np.testing.assert_array_equal(loaded.warp.array, result.warp.array)
    # the inverse maps the fixed image back near the moving one
    back = result.apply_inverse(fixed, moving)
    inside = moving.array > 20
    assert np.abs(back.array - moving.array)[inside].mean() < before


def test_label_maps_stay_labels(pair):
    fixed = gigareg.read_image(pair["fixed"])
    labels = fixed.with_array((fixed.array > 30).astype(np.int16) * 3 + (fixed.array > 60), pixel_type="int16")
    shift = np.eye(4)
    shift[:3, 3] = [0.7, -0.4, 0.3]
    out = gigareg.apply_transforms(labels, fixed, [shift], interpolation="label")
    assert out.pixel_type == "int16"
    assert set(np.unique(out.array)) <= set(np.unique(labels.array))
    nearest = gigareg.apply_transforms(labels, fixed, [shift], interpolation="nearest")
    assert set(np.unique(nearest.array)) <= set(np.unique(labels.array))
