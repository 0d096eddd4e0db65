"""The GPU validation kit: its wheel folder checks, its summary, its detection parsing, and the
whole kit in smoke mode on the CPU (tools/gpu_check.sh --smoke), so that it cannot rot."""

import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO, "tools", "gpu_check.sh")


@pytest.fixture
def wheels(load_tool):
    return load_tool("gpu_check_wheels")


def fake_folder(wheels, folder) -> None:
    """One small file per pinned package, named as `make gpu-wheels` names them, and the manifest."""
    os.makedirs(folder)
    for name, version in wheels.requirement_pins().items():
        if name == wheels.DETECTRON2:
            filename = f"{name}-{version}.tar.gz"
        else:
            filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        with open(os.path.join(folder, filename), "w") as f:
            f.write(name)
    wheels.write_manifest(str(folder))


def test_requirements_pin_every_file_by_hash_and_match_the_installer(wheels, load_tool):
    with open(wheels.REQUIREMENTS) as f:
        lines = [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]
    assert all(re.fullmatch(r"[\w.-]+==[\w.]+ --hash=sha256:[0-9a-f]{64}", line) for line in lines), lines
    detectron2 = [line for line in lines if line.startswith("pb1-detectron2==")]
    installer = load_tool("install_detectron2")
    assert detectron2 == [f"pb1-detectron2=={installer.PACKAGE_VERSION} --hash=sha256:{installer.SDIST_SHA256}"]
    names = wheels.requirement_names()
    assert len(names) == len(set(names)) and {"fvcore", "iopath", "gco-wrapper", "pycocotools"} <= set(names)


@pytest.mark.parametrize(
    "filename,fits",
    [
        ("yacs-0.1.8-py3-none-any.whl", True),
        ("pycocotools-2.0.11-cp312-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
        ("gco_wrapper-3.0.9-cp312-cp312-linux_x86_64.whl", True),
        ("gco_wrapper-3.0.9-cp311-cp311-linux_x86_64.whl", False),
        ("pycocotools-2.0.11-cp312-abi3-manylinux2014_aarch64.whl", False),
        ("x-1.0-cp312-cp312-win_amd64.whl", False),
    ],
)
def test_wheel_tags_for_cpython_312_on_linux(wheels, filename, fits):
    assert wheels.wheel_fits(filename) is fits


def test_artifact_names(wheels):
    assert wheels.artifact_name("antlr4_python3_runtime-4.9.3-py3-none-any.whl") == "antlr4-python3-runtime"
    assert wheels.artifact_name("pb1-detectron2-0.6.tar.gz") == "pb1-detectron2"
    assert wheels.artifact_name("gco-wrapper-3.0.9.tar.gz") == "gco-wrapper"
    assert wheels.split_artifact("fvcore-0.1.5.post20221221-py3-none-any.whl") == ("fvcore", "0.1.5.post20221221")
    assert wheels.split_artifact("pb1-detectron2-0.6.tar.gz") == ("pb1-detectron2", "0.6")


def test_verify_accepts_a_complete_folder_and_names_what_is_wrong(wheels, tmp_path):
    folder = tmp_path / "w"
    with pytest.raises(wheels.WheelsError, match="SHA256SUMS not found: run `make gpu-wheels` first"):
        wheels.verify(str(tmp_path))
    fake_folder(wheels, folder)
    assert len(wheels.verify(str(folder))) == len(wheels.requirement_names())

    yacs = f"yacs-{wheels.requirement_pins()['yacs']}-py3-none-any.whl"
    (folder / yacs).write_text("changed")
    with pytest.raises(wheels.WheelsError, match=rf"{yacs}: sha256 differs from SHA256SUMS"):
        wheels.verify(str(folder))
    (folder / "yacs-99.0-py3-none-any.whl").write_text("second version")
    wheels.write_manifest(str(folder))
    with pytest.raises(wheels.WheelsError, match=rf"expected one file of yacs, found \['{yacs}', 'yacs-99.0"):
        wheels.verify(str(folder))
    os.remove(folder / yacs)
    wheels.write_manifest(str(folder))
    with pytest.raises(wheels.WheelsError, match=r"yacs-99.0-py3-none-any.whl: expected version 0.1.8 of yacs"):
        wheels.verify(str(folder))
    os.rename(folder / "yacs-99.0-py3-none-any.whl", folder / yacs)
    wheels.write_manifest(str(folder))
    wheels.verify(str(folder))
    (folder / "extra-1.0-py3-none-any.whl").write_text("x")
    with pytest.raises(wheels.WheelsError, match=r"not listed: \['extra-1.0-py3-none-any.whl'\]"):
        wheels.verify(str(folder))
    wheels.write_manifest(str(folder))
    with pytest.raises(wheels.WheelsError, match=r"packages not in gpu_requirements.txt: \['extra'\]"):
        wheels.verify(str(folder))


def test_verify_cli_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "gpu_check_wheels.py"), "verify", "--dest", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {tmp_path}/SHA256SUMS not found: run `make gpu-wheels` first"


def test_report_collects_steps_bench_lines_and_failures(load_tool, tmp_path):
    (tmp_path / "steps.tsv").write_text(
        "tests\tok\t3\t90\ttests.log\t\n"
        "bench_throughput\tok\t5\t45\tbench.log\t\n"
        "detection\tfailed (exit 1)\t7\t150\tdetection.log\tlimit cut to the time left\n"
        "bench_compile\tnot run\t0\t60\tbench.log\tno time left in the 290 s budget\n"
    )
    (tmp_path / "tests.log").write_text("=== step tests\n....\n4 passed, 28 skipped in 1.0s\n")
    (tmp_path / "bench.log").write_text(
        "=== step bench_throughput\nsettings: arch=resnet50\nBENCH resnet50_64px_images_per_s_fp32 1234\nnoise\n"
    )
    (tmp_path / "detection.log").write_text(
        "=== step detection\n" + "".join(f"line {i}\n" for i in range(30)) + "error: the fp32 run failed\n"
    )
    (tmp_path / "env.txt").write_text("gpu: Some GPU, 1, 2 MiB\n")
    report = load_tool("gpu_check_report")
    path = report.main(report.get_parser().parse_args(["--out", str(tmp_path), "--note", "A note."]))
    text = open(path).read()
    assert text.startswith("# GPU check\n\nA note.\n") and "gpu: Some GPU" in text
    assert "| detection | failed (exit 1) | 7 | 150 | limit cut to the time left |" in text
    assert "| `resnet50_64px_images_per_s_fp32` | 1234 |" in text and "- settings: arch=resnet50" in text
    assert "`4 passed, 28 skipped in 1.0s`" in text
    failure = text.split("## detection: failed (exit 1) (last lines of detection.log)")[1]
    assert "error: the fp32 run failed" in failure and "line 29" in failure and "line 10" not in failure
    assert "## bench_compile: not run" in text


def test_detection_speed_and_results_parsing(load_tool, tmp_path):
    det = load_tool("gpu_check_detection")
    assert det.seconds_per_iter(str(tmp_path)) is None and det.eval_results(str(tmp_path)) == {}
    (tmp_path / "metrics.json").write_text(
        "".join(json.dumps({"iteration": i, "time": t}) + "\n" for i, t in enumerate([0.5, 0.3, 0.2]))
        + '{"iteration": 3}\n'
    )
    assert det.seconds_per_iter(str(tmp_path)) == pytest.approx(0.3)  # a run stopped early: the median
    (tmp_path / "log.txt").write_text(
        "[d2.engine.hooks]: Overall training speed: 97 iterations in 0:00:30 (0.3093 s / it)\n"
    )
    assert det.seconds_per_iter(str(tmp_path)) == pytest.approx(0.3093)
    results = {"iteration": 100, "datasets": {"gpucheck_voc_test": {"AP": 1.5, "AP50": 3.0, "AP75": 0.5}}}
    (tmp_path / "eval_results.json").write_text(json.dumps(results))
    assert det.eval_results(str(tmp_path)) == {"AP": 1.5, "AP50": 3.0, "AP75": 0.5}


def test_script_options():
    usage = subprocess.run(["bash", SCRIPT, "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and usage.stdout.startswith("GPU validation kit")
    proc = subprocess.run(["bash", SCRIPT, "--fast"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: unknown option --fast (expected --smoke or --help)"
    env = dict(os.environ, GPU_CHECK_DEVICE="tpu")
    proc = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "GPU_CHECK_DEVICE=tpu: expected cuda or cpu" in proc.stderr
    import torch

    if not torch.cuda.is_available():  # a full run asks for a GPU before doing anything
        env = dict(os.environ, GPU_CHECK_PYTHON=sys.executable, OUT="/nonexistent/never-created")
        proc = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 2 and "sees no CUDA device" in proc.stderr and "--smoke" in proc.stderr


@pytest.mark.slow
def test_smoke_run_on_the_cpu(tmp_path):
    """The whole kit, tiny, with this interpreter; the wheel step only checks .wheels/ if it is there."""
    out = tmp_path / "out"
    env = dict(
        os.environ,
        GPU_CHECK_DEVICE="cpu",
        OUT=str(out),
        GPU_CHECK_PYTHON=sys.executable,
        GPU_CHECK_WORK=str(tmp_path / "work"),
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(["bash", SCRIPT, "--smoke"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
    assert [s[0] for s in steps] == [
        "preflight",
        "install",
        "tests",
        "bench_throughput",
        "detection",
        "bench_pretrain",
        "bench_mixing",
        "bench_suspects",
        "bench_compile",
    ]
    assert all(s[1] == "ok" for s in steps[:1] + steps[2:]) and steps[1][1] in ("ok", "skipped")
    summary = (out / "gpu_check.md").read_text()
    for key in (
        "resnet50_32px_images_per_s_fp32",
        "det_r50c4_fp32_s_per_iter",
        "det_r50c4_fp32_AP50",
        "hybridmix_v3_step_ratio_cached",
        "projected_300ep_hours_hybridmix_v3",
        "salfmix_speedup_vs_loop",
        "hybridmix_v3_loss_sync_cost_pct",
        "eval_train_switch_cost_pct",
        "resnet20_compile_seconds",
        "syncs_per_step_hybridmix_v3_cached",
    ):
        assert f"| `{key}` |" in summary, key
    assert re.search(r"`\d+ skipped, \d+ deselected", summary), "the GPU-marked tests were not collected and skipped"
    files = set(os.listdir(out))  # a device run brings back at most 8 files
    assert {"bench.log", "detection.log", "env.txt", "gpu_check.md", "steps.tsv", "tests.log"} <= files
    assert len(files) <= 8


def test_step_limits_fit_the_budget():
    """A lent GPU gives 15 minutes in all: the full run's step limits fit its 470-s budget (less the
    summary's reserve), so the last steps are not cut; the smoke run's fit its own."""
    text = open(SCRIPT, encoding="utf-8").read()
    full = text[text.index("    paper=(") : text.index("\nfi\n", text.index("    paper=("))]
    smoke = text[text.index("    data_opts=(") : text.index("else\n    paper=(")]
    limit = lambda block: sum(int(m) for m in re.findall(r"^\s*step \w+ (\d+) ", block, re.M))  # noqa: E731
    common = int(re.search(r"^step preflight (\d+) ", text, re.M).group(1))
    install = int(
        re.search(r"step install (\d+) install.log \"\$py\" -m salfmix.install.wheels install", text).group(1)
    )
    verify = int(re.search(r"step install (\d+) install.log \"\$py\" -m salfmix.install.wheels verify", text).group(1))
    reserve = int(re.search(r"^reserve=(\d+)", text, re.M).group(1))
    assert common + install + limit(full) <= 470 - reserve
    assert common + verify + limit(smoke) <= 420 - reserve


def test_preflight_names_a_missing_module_and_its_wheel(tmp_path, monkeypatch):
    import salfmix.install.machine as tool

    monkeypatch.setattr(
        tool, "MODULES", (("json", "machine"), ("no_such_module_x", "gco-wrapper"), ("no_such_module_y", "machine"))
    )
    missing = tool.preflight(str(tmp_path))
    assert len(missing) == 2
    assert "no_such_module_x" in missing[0] and "has no gco-wrapper" in missing[0] and "make gpu-wheels" in missing[0]
    assert "no_such_module_y" in missing[1] and "does not carry it" in missing[1]
