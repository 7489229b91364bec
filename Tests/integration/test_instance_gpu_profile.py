"""Instance reservations with a gpu_profile: each instance also holds one MIG slice on its host."""

from __future__ import annotations

from berthtest import lease_params, make_host, ts


def gpu_host(rpc, name, gpus=1, vcpus=64):
    return make_host(rpc, name, vcpus=vcpus, gpus=[{"model": "A100-40GB"}] * gpus)


def test_each_instance_gets_a_slice_on_its_own_host(rpc):
    gpu_host(rpc, "g1")
    make_host(rpc, "c1", vcpus=64)  # no GPU: never chosen for a gpu_profile instance
    lease = rpc.call("lease.create", lease_params(ts(1), ts(3), reservations=[
        {"kind": "instance", "vcpus": 4, "memory_mb": 4096, "disk_gb": 10, "count": 3, "gpu_profile": "1g.5gb"}]))
    allocs = lease["reservations"][0]["allocations"]
    slots = [a for a in allocs if "slots" in a]
    slices = [a for a in allocs if "gpu" in a]
    assert sum(a["slots"] for a in slots) == 3
    assert len(slices) == 3
    assert {a["host"] for a in slots} == {"g1"} == {a["host"] for a in slices}
    assert all(a["profile"] == "1g.5gb" for a in slices)
    assert len({a["slot"] for a in slices}) == 3  # distinct slices


def test_slices_limit_instances_even_when_cpus_are_free(rpc):
    gpu_host(rpc, "g1", vcpus=128)
    ok = lease_params(ts(1), ts(3), reservations=[
        {"kind": "instance", "vcpus": 1, "memory_mb": 512, "disk_gb": 1, "count": 7, "gpu_profile": "1g.5gb"}])
    rpc.call("lease.create", ok)
    # Seven 1g.5gb fill the A100's compute: an eighth instance cannot have a slice.
    e = rpc.error("lease.create", lease_params(ts(2), ts(4), reservations=[
        {"kind": "instance", "vcpus": 1, "memory_mb": 512, "disk_gb": 1, "count": 1, "gpu_profile": "1g.5gb"}]), -32002)
    assert e.data.get("earliest_start") == ts(3)


def test_unknown_gpu_profile_names_the_field(rpc):
    gpu_host(rpc, "g1")
    e = rpc.error("lease.create", lease_params(ts(1), ts(3), reservations=[
        {"kind": "instance", "vcpus": 1, "memory_mb": 512, "disk_gb": 1, "count": 1, "gpu_profile": "9g.99gb"}]), -32602)
    assert "reservations[0].gpu_profile" in e.error_paths
