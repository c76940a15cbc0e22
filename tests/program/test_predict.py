"""Step 4 through run.py as a user calls it: --mode=predict and --mode=export.

The runs are jobs of conftest.py, on runs the other program tests train (the toy fine-tuned
run, the Fashion-MNIST distilled run and its --mode=eval); a model without a supervised head
is predicted in process (tests/stages/test_predict.py). Oracles: the
exported SavedModel of the same run, loaded with tf.saved_model.load and fed images that are
decoded by PIL and resized by TensorFlow's bicubic op here; the --mode=eval result of the same
checkpoint on the same images; TF Serving's loader path (`saved_model_cli run`); onnxruntime
and the LiteRT interpreter.
"""
import csv
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from checkpoints import export as export_lib
from checkpoints import serving
from tests import hang_guard

runs = pytest.mark.runs
REPO = Path(__file__).resolve().parents[2]
SIZE = 16  # the toy runs' image size: no centre crop, a resize only
ATOL = 1e-5


def _rows(output_dir):
    with open(Path(output_dir) / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def _output_dir(result):
    return next(a.split("=", 1)[1] for a in result.args if a.startswith("--output_dir="))


def _prepared(paths):
    """Evaluation at 16 px, written here: decoded to RGB by TensorFlow's decoder (PIL's JPEG
    decoder rounds differently), scaled to [0, 1], TensorFlow's bicubic resize, clipped."""
    images = []
    for path in paths:
        pixels = tf.io.decode_image(tf.io.read_file(str(path)), channels=3).numpy() / 255.0
        images.append(np.clip(tf.image.resize(pixels.astype(np.float32), [SIZE, SIZE],
                                              "bicubic").numpy(), 0, 1))
    return np.stack(images)


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _saved_model(model_dir):
    return f"{model_dir}/saved_model/{export_lib.exported_steps(f'{model_dir}/saved_model')[-1]}"


@runs("predict_folder", "toy_finetune")
def test_folder_rows_equal_the_saved_model(runs):
    result = runs.result("predict_folder").check()
    finetune = runs.result("toy_finetune").check()
    out = Path(_output_dir(result))
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["images"], summary["predicted"], summary["unreadable"]) == (33, 32, 1)
    broken = str(Path(runs.base) / "predict_images" / "dark" / "zz_broken.png")
    assert (out / "unreadable.txt").read_text() == broken + "\n"
    assert broken in result.stderr  # warned as it was skipped
    assert result.lines_starting("images") == [
        f"33: 32 predicted, 1 unreadable (skipped, listed in {out}/unreadable.txt)"]
    # Every row against the SavedModel, fed images prepared here.
    rows = _rows(out)
    loaded = tf.saved_model.load(_saved_model(finetune.model_dir))
    reference = loaded.signatures["serve"](images=_prepared([r["path"] for r in rows]))
    probs = _softmax(reference["logits_sup"].numpy())
    names = ("bright", "dark")
    labels = [Path(r["path"]).parent.name for r in rows]
    assert [r["label"] for r in rows] == labels
    assert [r["class_1"] for r in rows] == [names[k] for k in probs.argmax(-1)]
    assert len({r["class_1"] for r in rows}) == 2  # both classes predicted: the check can fail
    np.testing.assert_allclose([float(r["probability_1"]) for r in rows], probs.max(-1),
                               atol=1e-5)
    np.testing.assert_allclose(np.load(out / "embeddings.npy"),
                               reference["final_avg_pool"].numpy(), atol=ATOL)
    top1 = np.mean([names[k] == label for k, label in zip(probs.argmax(-1), labels)])
    assert summary["top1"] == pytest.approx(top1) and summary["labelled"] == 32
    # The printed load command runs as printed, in a shell in the repository.
    load = result.lines_starting("load")[0]
    shell = hang_guard.run(["bash", "-c", load], cwd=REPO, capture_output=True, text=True)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.startswith(f"32 (32, {reference['final_avg_pool'].shape[-1]}) float32")


@runs("predict_tfds", "evaluate")
def test_tfds_top1_equals_mode_eval_on_the_same_images(runs):
    """The Fashion-MNIST distilled model's --mode=eval job scored the first 64 test images
    (2 batches of 32, step 4); prediction over test[:64] with the command that evaluation
    printed counts the same top-1 and top-5."""
    result = runs.result("predict_tfds").check()
    distill = runs.result("distill").check()
    # The printed command: this interpreter and run.py as a shell in REPO finds them, the
    # distilled model, and the data and batch of the evaluation (32 images a batch).
    (printed,) = runs.result("evaluate").lines_starting("use")
    words = shlex.split(printed)
    assert words[:4] == [runs.interpreter, "run.py", "--mode=predict",
                         f"--model_dir={distill.model_dir}"], printed
    assert f"--data_dir={runs.data_dir}" in words and "--eval_batch_size=32" in words
    evaluated = json.loads((Path(distill.model_dir) / "result.json").read_text())
    assert evaluated["num_examples"] == 64
    summary = json.loads((Path(_output_dir(result)) / "summary.json").read_text())
    assert (summary["top1"], summary["top5"]) == (evaluated["top1"], evaluated["top5"])
    assert summary["read"] == evaluated["checkpoint"]
    assert 0 < evaluated["top1"] < 1  # ten classes: not a trivial count
    rows = _rows(_output_dir(result))
    assert [int(r["index"]) for r in rows] == list(range(64))
    assert list(rows[0])[:2] == ["index", "label"] and len(list(rows[0])) == 2 + 2 * 5
    assert result.lines_starting("accuracy")[0].startswith(f"top-1 {evaluated['top1']:.4f}")


@runs("predict_saved_model", "toy_finetune")
def test_saved_model_on_a_file_list_equals_its_bytes_signature_and_tf_serving(runs, tmp_path):
    result = runs.result("predict_saved_model").check()
    finetune = runs.result("toy_finetune").check()
    out = Path(_output_dir(result))
    rows = _rows(out)
    listed = Path(runs.base) / "predict_list"
    paths = [r["path"] for r in rows]
    assert [Path(p).name for p in paths] == ["000.png", "001.png", "000.png", "wide.png",
                                             "tall.jpg"]
    assert (out / "unreadable.txt").read_text() == f"{listed / 'missing.png'}\n"
    assert list(rows[0]) == ["path", "class_1", "probability_1"]  # no labels, --top_k=1
    saved = _saved_model(finetune.model_dir)
    loaded = tf.saved_model.load(saved)
    contents = [open(p, "rb").read() for p in paths]
    served = loaded.signatures[serving.SERVE_BYTES](image_bytes=tf.constant(contents))
    assert [r["class_1"] for r in rows] == [n.decode() for n in served["class_names"].numpy()]
    assert len({r["class_1"] for r in rows}) == 2  # both classes occur: the check can fail
    np.testing.assert_allclose([float(r["probability_1"]) for r in rows],
                               served["probabilities"].numpy().max(-1), atol=1e-5)
    # The bytes signature agrees with the pixel signature on images prepared here.
    pixel = loaded.signatures["serve"](images=_prepared(paths))
    np.testing.assert_allclose(served["embedding"], pixel["final_avg_pool"], atol=ATOL)
    projected = pixel["proj_head_output"].numpy()
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), projected / np.linalg.norm(
        projected, axis=-1, keepdims=True), atol=ATOL)
    # TF Serving's path: the SignatureDef run by TF1's session loader.
    np.save(tmp_path / "bytes.npy", np.array(contents, dtype=object), allow_pickle=True)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    cli_run = hang_guard.run(
        [cli, "run", "--dir", saved, "--tag_set", "serve", "--signature_def",
         serving.SERVE_BYTES, "--inputs", f"{serving.BYTES_INPUT}={tmp_path}/bytes.npy",
         "--outdir", str(tmp_path / "cli")], capture_output=True, text=True)
    assert cli_run.returncode == 0, cli_run.stderr[-3000:]
    assert [n.decode() for n in np.load(tmp_path / "cli" / "class_names.npy",
                                        allow_pickle=True)] == [r["class_1"] for r in rows]
    np.testing.assert_allclose(np.load(tmp_path / "cli" / "probabilities.npy").max(-1),
                               [float(r["probability_1"]) for r in rows], atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "cli" / "embedding.npy"), served["embedding"],
                               atol=ATOL)


@runs("export", "toy_finetune")
def test_onnx_and_litert_files_answer_as_the_saved_model(runs):
    result = runs.result("export")
    if not importlib.util.find_spec("tf2onnx"):  # the optional requirements are absent
        assert result.returncode == 2 and "pip install -r requirements-export.txt" in \
            result.stderr
        # .ci/run installs them: there the check of the files must run, not skip.
        assert os.environ.get("SIMCLR_TESTS_REQUIRE_EXPORT") != "1", result.stderr
        pytest.skip("tf2onnx not installed (requirements-export.txt): the refusal was checked")
    result.check()
    from checkpoints import formats
    out = Path(_output_dir(result))
    assert "bytes" in result.lines_starting("note")[0]
    finetune = runs.result("toy_finetune").check()
    paths = sorted(Path(runs.toy_dir, "test").glob("*/*.png"))[::4]  # 8 images, both classes
    images = _prepared(paths)
    expected = tf.saved_model.load(_saved_model(finetune.model_dir)).signatures["serve"](
        images=images)
    logits = expected["logits_sup"].numpy()
    litert = formats.litert_interpreter(str(out / "model.tflite")).get_signature_runner()(
        images=images)
    answers = {"litert": litert}
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime
        session = onnxruntime.InferenceSession(str(out / "model.onnx"))
        answers["onnx"] = dict(zip([o.name for o in session.get_outputs()],
                                   session.run(None, {"images": images})))
    for name, answer in answers.items():
        np.testing.assert_allclose(answer["logits"], logits, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_array_equal(answer["classes"], logits.argmax(-1), err_msg=name)
    assert (out / "class_names.txt").read_text() == "bright\ndark\n"
    opened = hang_guard.run(["bash", "-c", result.lines_starting("open")[0]], cwd=REPO,
                            capture_output=True, text=True)
    assert opened.returncode == 0 and "logits" in opened.stdout, opened.stderr


# Holds the lock until killed or its stdin closes (no time limit a slow machine could reach).
HOLDER = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from checkpoints import model_dir; claim = model_dir.Claim(sys.argv[2], ['train']); "
          "print('held', flush=True); sys.stdin.read()")


@runs("predict_folder", "toy_finetune")
def test_bad_inputs_one_line_and_status_2(runs, tmp_path):
    finetune = runs.result("toy_finetune").check()
    busy = tmp_path / "busy"
    busy.mkdir()
    (tmp_path / "empty").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(REPO), str(busy)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    folder_output = _output_dir(runs.result("predict_folder").check())
    toy = f"--dataset=folder:{runs.toy_dir}"
    cases = [
        ([toy], "--mode=predict needs --model_dir="),
        ([toy, f"--model_dir={tmp_path}/none"], f"--model_dir={tmp_path}/none: no such"),
        ([toy, f"--model_dir={busy}"], f"process {holder.pid} on host"),
        ([toy, f"--model_dir={finetune.model_dir}", "--image_size=64"],
         "--image_size=64: the model in"),
        ([f"--dataset=folder:{tmp_path}/empty", f"--model_dir={finetune.model_dir}"],
         "No readable JPEG or PNG image"),
        ([toy, f"--model_dir={finetune.model_dir}", f"--output_dir={folder_output}"],
         "exists; pass --overwrite"),
    ]
    try:
        for args, named in cases:
            if "--output_dir" not in " ".join(args):
                args = args + [f"--output_dir={tmp_path}/out"]
            call = hang_guard.run([sys.executable, "run.py", "--mode=predict", *args], cwd=REPO,
                                  capture_output=True, text=True)
            errors = [l for l in call.stderr.splitlines() if l.startswith("error:")]
            assert call.returncode == 2 and len(errors) == 1 and named in errors[0], \
                (args, call.stderr[-2000:])
            assert "Traceback" not in call.stderr
    finally:
        holder.kill()
        holder.wait()
