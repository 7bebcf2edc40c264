"""The shipped hydra recipe (examples/config/minilm_pseudo_masked.yaml) trains: bf16 on CPU
through fairseq-hydra-train (the only way fairseq runs bf16 on CPU) with the plugin's
torch_adamw, on the real MiniLM. Checks the saved weights are bf16 values and moved."""
import os

import pytest
import torch

from conftest import REPO, USER_DIR, run_cli


@pytest.mark.slow
def test_hydra_recipe_trains_in_bf16_on_cpu(toy_data, minilm, tmp_path):
    save = tmp_path / "ckpt"
    proc = run_cli("fairseq-hydra-train", "--config-dir", os.path.join(REPO, "examples", "config"),
                   "--config-name", "minilm_pseudo_masked", f"common.user_dir={USER_DIR}", f"task.data={toy_data}",
                   f"model.pretrained_checkpoint={minilm}", f"checkpoint.save_dir={save}",
                   "optimization.max_update=3", "dataset.batch_size=8", "lr_scheduler.warmup_updates=1",
                   "lr_scheduler.total_num_update=3", "dataset.disable_validation=true",
                   f"hydra.run.dir={tmp_path / 'hydra'}", cwd=str(tmp_path))
    assert proc.returncode == 0
    state = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    history = state["optimizer_history"][-1]
    assert history["num_updates"] == 3
    assert history["optimizer_name"] == "FP16Optimizer"  # fairseq's bf16 wrapper (fp32 master weights)
    assert state["cfg"]["optimizer"]["_name"] == "torch_adamw"
    assert state["last_optimizer_state"]["param_groups"][0]["fused"] is True  # torch's fused AdamW inside
    weights = state["model"]
    w = weights["stack.layers.0.query.weight"]  # fairseq saves bf16 tensors as float32 (move_to_cpu)
    assert torch.equal(w, w.to(torch.bfloat16).float()), "the model did not run in bf16"
    from safetensors.torch import load_file
    pretrained = load_file(os.path.join(minilm, "model.safetensors"))
    key = next(k for k in pretrained if k.endswith("layer.0.attention.self.query.weight"))
    start = pretrained[key].to(torch.bfloat16).float()
    assert (w - start).abs().max().item() > 0, \
        "bf16 training did not update the weights"
