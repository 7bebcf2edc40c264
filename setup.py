"""s2sft-fairseq: fine-tune bidirectional Transformers as sequence-to-sequence models in fairseq."""
from setuptools import find_packages, setup

setup(
    name="s2sft-fairseq",
    version="0.1.0",
    description="s2s-ft (Bao et al.) causal / masked / pseudo-masked fine-tuning as a fairseq plugin",
    # The data tools live in the folder preprocess/ (run as `python -m preprocess.<module>` from the
    # repository root) and are installed as `s2sft_preprocess`: a top-level package called
    # `preprocess` in site-packages would clash with any other project's. The files s2sft-export
    # copies into an export (export_templates/, never imported by the plugin) are installed as
    # `s2sft_export_templates`.
    packages=find_packages(include=["s2sft_fairseq", "s2sft_fairseq.*"]) + ["s2sft_preprocess", "s2sft_export_templates"],
    package_dir={"s2sft_preprocess": "preprocess", "s2sft_export_templates": "export_templates"},
    package_data={"s2sft_fairseq.serving": ["demo.html"]},  # the demo page of s2sft-serve
    python_requires=">=3.10",
    # torch and fairseq are installed by tests/setup_env.sh in a fixed order (see README);
    # they are not declared here so that pip never resolves an unpinned (CUDA) torch.
    install_requires=[],
    entry_points={
        "console_scripts": [
            "s2sft-prepare=s2sft_preprocess.prepare:cli_main",
            "s2sft-score=s2sft_fairseq.scoring.cli:cli_main",
            "s2sft-import=s2sft_fairseq.checkpoints.cli:cli_main",
            "s2sft-export=s2sft_fairseq.export.cli:cli_main",
            "s2sft-serve=s2sft_fairseq.serving.cli:cli_main",
        ],
    },
)
