"""SyncBatchGroupNorm: two gloo processes (two NCCL processes on two GPUs, when present) with
batch b match one process with batch 2b."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from normlab.layers import BatchGroupNorm, SyncBatchGroupNorm


def _worker(rank, world, x, dy, params, out_dir, backend="gloo"):
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    x, dy = x.to(device), dy.to(device)
    params = {k: v.to(device) if torch.is_tensor(v) else v for k, v in params.items()}
    # a file rendezvous: no TCP port to race for
    dist.init_process_group(backend, init_method=f"file://{out_dir}/rendezvous", rank=rank,
                            world_size=world)
    try:
        layer = SyncBatchGroupNorm(x.shape[1], groups=params["groups"], momentum=0.3).double().to(device)
        with torch.no_grad():
            layer.weight.copy_(params["weight"])
            layer.bias.copy_(params["bias"])
        b = x.shape[0] // world
        xs = x[rank * b:(rank + 1) * b].clone().requires_grad_(True)
        for _ in range(2):   # two steps, so the running statistics compound
            xs.grad = None
            layer.weight.grad = None
            y = layer(xs)
            y.backward(dy[rank * b:(rank + 1) * b])
        torch.save({"y": y.detach().cpu(), "gx": xs.grad.cpu(), "gw": layer.weight.grad.cpu(),
                    "rm": layer.running_mean.cpu(), "rv": layer.running_var.cpu()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


NCCL = torch.cuda.is_available() and torch.cuda.device_count() >= 2 and dist.is_nccl_available()


@pytest.mark.parametrize("groups,shape", [(4, (4, 8, 3, 3)), (12, (4, 6, 4)), (3, (2, 6, 2, 2, 2))])
@pytest.mark.parametrize("backend", ["gloo", pytest.param("nccl", marks=pytest.mark.skipif(
    not NCCL, reason="NCCL needs two CUDA devices"))])
def test_two_processes_match_single_process(tmp_path, groups, shape, backend):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64) * 2 + 1
    dy = torch.randn(shape, dtype=torch.float64)
    params = {"groups": groups, "weight": torch.rand(shape[1], dtype=torch.float64) + 0.5,
              "bias": torch.randn(shape[1], dtype=torch.float64)}
    mp.spawn(_worker, args=(2, x, dy, params, str(tmp_path), backend), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    ref = BatchGroupNorm(shape[1], groups=groups, momentum=0.3).double()
    with torch.no_grad():
        ref.weight.copy_(params["weight"])
        ref.bias.copy_(params["bias"])
    xr = x.clone().requires_grad_(True)
    for _ in range(2):
        xr.grad = None
        ref.weight.grad = None
        y = ref(xr)
        y.backward(dy)
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach())
    torch.testing.assert_close(torch.cat([r["gx"] for r in ranks]), xr.grad)
    torch.testing.assert_close(ranks[0]["gw"] + ranks[1]["gw"], ref.weight.grad)
    for r in ranks:
        torch.testing.assert_close(r["rm"], ref.running_mean)
        torch.testing.assert_close(r["rv"], ref.running_var)


def test_single_process_is_plain_bgn():
    x = torch.randn(4, 8, 3, 3)
    a, b = SyncBatchGroupNorm(8, groups=4), BatchGroupNorm(8, groups=4)
    assert torch.equal(a(x), b(x))
