"""`fjs demo` picks the SuperNode image for the host and says why."""

from apps.fjs.host import node_variant


def test_cuda_only_where_docker_can_hand_out_a_gpu():
    assert node_variant(runtime=lambda: True, gpus=lambda: True)[0] == "cuda"
    assert node_variant(runtime=lambda: False, gpus=lambda: False) == (
        "cpu", "no NVIDIA runtime in Docker and no GPU visible; --gpu forces the CUDA image")
    variant, why = node_variant(runtime=lambda: False, gpus=lambda: True)
    assert variant == "cpu" and "NVIDIA Container Toolkit" in why


def test_flags_force_either():
    assert node_variant(force_cpu=True, runtime=lambda: True) == ("cpu", "--cpu")
    assert node_variant(force_gpu=True, runtime=lambda: False) == ("cuda", "--gpu")


def test_this_host_is_read_without_error():
    variant, why = node_variant()  # the real docker info / nvidia-smi of the machine running the tests
    assert variant in ("cpu", "cuda") and why


def test_an_unreachable_hub_is_told_apart_quickly():
    import time

    from apps.fjs.host import hub_reachable

    started = time.monotonic()
    assert hub_reachable("https://hub.invalid/api", timeout=5) is False  # .invalid never resolves
    assert time.monotonic() - started < 30
