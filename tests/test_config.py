import json

import pytest

from m2ugen.config import M2UGenConfig, ProjectorConfig
from m2ugen.errors import ConfigError


@pytest.mark.parametrize("name", ["tiny", "paper-musicgen", "paper-audioldm2"])
def test_json_round_trip(tmp_path, name):
    cfg = M2UGenConfig.preset(name)
    cfg.save(tmp_path / "config.json")
    again = M2UGenConfig.load(tmp_path / "config.json")
    assert again == cfg
    assert isinstance(again.projector, ProjectorConfig)


def test_paper_sizes():
    mg = M2UGenConfig.preset("paper")
    assert (mg.layers_per_modality, mg.lora_rank, mg.num_aud_tokens) == (6, 16, 8)
    assert (mg.projector.num_queries, mg.projector.out_dim) == (128, 768)
    ldm = M2UGenConfig.preset("paper-audioldm2")
    assert (ldm.projector.num_queries, ldm.projector.out_dim) == (1, 137216)


def test_bad_configs(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset"):
        M2UGenConfig.preset("huge")
    with pytest.raises(ConfigError, match="unknown decoder"):
        M2UGenConfig.preset("tiny", decoder="wavenet")
    data = M2UGenConfig.preset("tiny").to_dict() | {"colour": "red"}
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="colour"):
        M2UGenConfig.load(tmp_path / "c.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        M2UGenConfig.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="not found"):
        M2UGenConfig.load(tmp_path / "missing.json")


def test_package_exports_are_lazy():
    import subprocess
    import sys

    code = ("import sys, m2ugen; assert 'torch' not in sys.modules; "
            "from m2ugen import Assistant, M2UGenConfig; print(Assistant.__module__, M2UGenConfig.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["m2ugen.assistant", "m2ugen.config"]


@pytest.mark.parametrize("overrides", [{"lora_rank": "x"}, {"layers_per_modality": 2.5}, {"llm_path": 3},
                                       {"mert_window_seconds": True}, {"projector": {"num_queries": "8"}}])
def test_wrong_value_types_are_named(overrides):
    with pytest.raises(ConfigError, match=next(iter(overrides)) if "projector" not in overrides else "num_queries"):
        M2UGenConfig.preset("tiny", **overrides)
