"""prepare -> tokenize -> train -> save -> synthesize, through the command line, on a generated corpus.

The corpus holds a file that is not audio and an utterance with an empty transcript: both are
skipped with a logged reason, and training runs on the rest.
"""

import json
import logging

import numpy as np
import pytest
import soundfile as sf

from valle2.cli import main
from trainkit import make_corpus, one_thread  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    make_corpus(root / "corpus", n=8, corrupt=True, empty=True)
    make_corpus(root / "valid", n=3, seed=2)
    assert main(["prepare", "folder", str(root / "corpus"), "--out", str(root / "manifests"), "--name", "train"]) == 0
    assert main(["prepare", "folder", str(root / "valid"), "--out", str(root / "manifests"), "--name", "valid"]) == 0
    for split in ("train", "valid"):
        assert main(["tokenize", "--config", "debug", "--cuts", str(root / "manifests" / f"{split}_cuts.jsonl.gz"),
                     "--out", str(root / "tokens" / split), "--shard-size", "4"]) == 0
    assert main(["train", "--config", "debug", f"data.train=[{root / 'tokens' / 'train'}]",
                 f"data.valid=[{root / 'tokens' / 'valid'}]", f"train.out_dir={root / 'run'}", "train.steps=4",
                 "train.log_every=2", "train.valid_every=2", "train.checkpoint_every=2", "train.sample_every=4",
                 "train.n_samples=1", "export.requires_consent=false", "export.name=e2e",
                 "export.nar_precision=bf16", "export.ar_precision=int8", "export.temperature=0.7", "export.top_p=0.9"]) == 0
    return root


def test_bad_inputs_are_skipped_with_a_reason(trained):
    prepare_skips = [json.loads(s) for s in (trained / "manifests" / "train_skipped.jsonl").read_text().splitlines()]
    assert [(s["reason"], s["id"].endswith("broken.wav")) for s in prepare_skips] == [("unreadable audio", True)]
    token_skips = [json.loads(s) for s in (trained / "tokens" / "train" / "skipped.jsonl").read_text().splitlines()]
    assert [(s["id"], s["reason"]) for s in token_skips] == [("spk1/silent_text", "empty transcript")]
    index = json.loads((trained / "tokens" / "train" / "index.json").read_text())
    assert (index["n_cuts"], index["n_skipped"], index["n_shards"]) == (8, 1, 3)
    assert index["skipped_by_reason"] == {"empty transcript": 1}


def test_training_logged_and_checkpointed(trained):
    run = trained / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == [2, 4]
    assert {"loss", "ar_loss", "ar_acc", "nar_loss", "nar_acc", "lr", "frames_per_s", "grad_norm"} <= set(train_rows[0])
    valid = [r for r in rows if r["split"] == "valid"]
    assert {"ar_loss", "nar_loss", "acc/cb0", "acc/cb1", "acc/cb2", "acc/cb3"} <= set(valid[-1])
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    sample = run / "samples" / "step-00000004" / "0-sample.wav"
    assert sf.info(str(sample)).frames > 0
    # Training samples are model output too: they went through the safety policy.
    from valle2.safety import watermark
    from valle2.safety.keys import watermark_key

    wav, sr = sf.read(str(sample), dtype="float32")
    assert watermark.detect(wav, sr, key=watermark_key()).watermarked


def test_exported_model_loads_and_speaks(trained):
    from valle2.models.valle2 import VallE2

    model = VallE2.from_pretrained(trained / "run" / "model")
    assert model.name == "e2e" and model.config.n_codebooks == 4 and model.nar_precision == "bf16"
    assert model.ar_precision == "int8"
    assert (model.sampling.temperature, model.sampling.top_p, model.sampling.nar_decoding) == (0.7, 0.9, "greedy")
    wav, sr = sf.read(trained / "corpus" / "spk0" / "utt000.wav", dtype="float32")
    prompt = model.prepare_prompt((wav, sr), "The cat sat on the mat.")
    rows = model.make_rows("Birds sing in the morning.", prompt)
    [result] = model.generate(rows, seed=0)
    audio = model.codec.decode(result.codes)
    assert result.codes.shape[0] == 4 and np.isfinite(audio).all()


def test_export_a_checkpoint_while_or_after_training(trained, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from valle2.models.valle2 import VallE2

    ckpts = trained / "run" / "checkpoints"
    tokens = trained / "tokens" / "train"
    # the latest checkpoint (step 4, the end of the run) gives the run's own export, weight for weight
    assert main(["export", str(ckpts), "--out", str(tmp_path / "last"), "--data", str(tokens)]) == 0
    final, again = load_file(str(trained / "run" / "model" / "model.safetensors")), load_file(str(tmp_path / "last" / "model.safetensors"))
    assert final.keys() == again.keys() and all(torch.equal(final[k], again[k]) for k in final)
    # an earlier one, in float16 and renamed: different weights, half the bytes, loads and speaks
    assert main(["export", str(ckpts / "step-00000002"), "--out", str(tmp_path / "early"), "--data", str(tokens),
                 "--dtype", "float16", "--set", "export.name=early"]) == 0
    early = load_file(str(tmp_path / "early" / "model.safetensors"))
    assert {v.dtype for v in early.values() if v.is_floating_point()} == {torch.float16}
    assert any(not torch.equal(early[k].float(), final[k].float()) for k in final if final[k].is_floating_point())
    model = VallE2.from_pretrained(tmp_path / "early")
    assert model.name == "early" and model.nar_precision == "bf16"
    wav, sr = sf.read(trained / "corpus" / "spk0" / "utt000.wav", dtype="float32")
    [result] = model.generate(model.make_rows("Birds sing.", model.prepare_prompt((wav, sr), "The cat sat on the mat.")), seed=0)
    assert result.codes.shape[0] == 4
    # export.residual_prior code0: fitted from every training cut's codes
    assert main(["export", str(ckpts), "--out", str(tmp_path / "prior"), "--data", str(tokens),
                 "--set", "export.residual_prior=code0", "--set", "export.nar_weight=0.5"]) == 0
    prior = VallE2.from_pretrained(tmp_path / "prior")
    from valle2.data.tokenize import open_tokenized

    frames = sum(c.custom["tokens"]["frames"] for c in open_tokenized([str(tokens)]).cuts)
    V, D = prior.codec.code_entries().shape[1:]
    assert prior.sampling.residual_prior == "code0" and prior.residual_prior.shape == (V, D)
    assert int(prior.residual_prior_counts.sum()) == frames > 0
    # clear errors (exit code 2, one line): not a checkpoint; the run's data missing; not an export setting
    for argv, match in [([str(tmp_path), "--data", str(tokens)], "not a training checkpoint"),
                        ([str(ckpts), "--data", str(tmp_path / "nowhere")], "tokenized data"),
                        ([str(ckpts), "--set", "model.size=paper"], "only export"),
                        ([str(ckpts), "--data", str(tokens), "--codec-by-name"], "not bundled")]:
        capsys.readouterr()
        assert main(["export", *argv, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert match in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_synthesize_command_uses_the_trained_model(trained, caplog):
    pytest.importorskip("valle2.safety.policy", reason="the safety policy is not in this tree yet")
    out = trained / "out.wav"
    caplog.set_level(logging.INFO)
    assert main(["synthesize", "--model", str(trained / "run" / "model"), "--prompt",
                 str(trained / "corpus" / "spk0" / "utt000.wav"), "--prompt-text", "The cat sat on the mat.",
                 "--text", "Birds sing in the morning.", "--out", str(out), "--seed", "0"]) == 0
    assert sf.info(str(out)).frames > 0


def test_train_the_nar_on_top_of_a_trained_model(trained, tmp_path):
    import torch
    from safetensors.torch import load_file

    from valle2.config import load_config
    from valle2.training import train

    base = trained / "run" / "model"
    cfg = load_config("debug", [f"data.train=[{trained / 'tokens' / 'train'}]", f"train.out_dir={tmp_path}",
                                "train.models=nar", "train.steps=2", f"train.init_from={base}", "train.n_samples=0"])
    result = train(cfg)
    old, new = load_file(base / "model.safetensors"), load_file(result.export_dir / "model.safetensors")
    assert old.keys() == new.keys()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith("ar."))  # carried over
    assert any(not torch.equal(old[k], new[k]) for k in old if k.startswith("nar."))  # trained further
