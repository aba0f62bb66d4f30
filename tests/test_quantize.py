from edgetune.quantize import choose_dynamic_int8


def test_avx2_without_vnni_reduces_range():
    choice = choose_dynamic_int8({"avx", "avx2"}, "x86_64")
    assert choice.reduce_range and choice.per_channel and "without VNNI" in choice.reason


def test_vnni_uses_full_range():
    assert not choose_dynamic_int8({"avx2", "avx512f", "avx512_vnni"}, "x86_64").reduce_range
    assert not choose_dynamic_int8({"avx2", "avx_vnni"}, "x86_64").reduce_range


def test_arm_uses_full_range():
    assert not choose_dynamic_int8(set(), "aarch64").reduce_range
