from pathlib import Path

import pytest

from edgetune.errors import InputError
from edgetune.profiles import available_profiles, load_profile


def test_shipped_profiles_load_and_match_the_card():
    names = set(available_profiles())
    assert {"cpu-edge", "cpu-server", "gpu-server"} <= names
    edge = load_profile("cpu-edge")
    assert (edge.intra_op_threads, edge.batch_size, edge.sequence_length) == (2, 1, 128)
    server = load_profile("cpu-server")
    assert server.batch_size == 32 and server.intra_op_threads == 0 and server.threads >= 1
    gpu = load_profile("gpu-server")
    assert gpu.device == "cuda" and gpu.execution_providers[0] == "CUDAExecutionProvider"


def test_top_level_profiles_folder_is_the_packaged_one():
    top = Path(__file__).resolve().parents[1] / "profiles"
    assert sorted(p.name for p in top.glob("*.toml")) == sorted(
        p.name for p in available_profiles().values()
    )


def test_budget_override():
    assert load_profile("cpu-edge", latency_budget_ms=3.5).latency_budget_ms == 3.5


def test_user_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nlatency_budget_ms = 9\nbatch_size = 4\n')
    profile = load_profile(str(path))
    assert profile.name == "mine" and profile.batch_size == 4


def test_unknown_profile_names_the_choices():
    with pytest.raises(InputError, match="unknown profile 'nope'.*cpu-edge"):
        load_profile("nope")


@pytest.mark.parametrize(
    "body, field",
    [
        ('name = "x"\nlatency_budget_ms = 10\nbatch_size = 0\n', "batch_size"),
        ('name = "x"\nlatency_budget_ms = 10\ndevice = "tpu"\n', "device"),
        ('name = "x"\n', "latency_budget_ms"),
        ('name = "x"\nlatency_budget_ms = 10\nthreads = 2\n', "threads"),
        (
            'name = "x"\nlatency_budget_ms = 10\nexecution_providers = ["CPU"]\n',
            "execution_providers",
        ),
    ],
)
def test_bad_field_names_file_and_field(tmp_path, body, field):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(InputError) as info:
        load_profile(str(path))
    message = str(info.value)
    assert str(path) in message and f"'{field}" in message


def test_not_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = = 3")
    with pytest.raises(InputError, match="not valid TOML"):
        load_profile(str(path))
