import pytest
import torch

from normlab.data import DataError, available_datasets, crop_flip, load_dataset


@pytest.mark.parametrize("name,shape,n", [("digits", (1, 8, 8), 1797), ("mnist5k", (1, 28, 28), 5000)])
def test_shipped_sets(name, shape, n):
    d = load_dataset(name)
    assert d.size("train") + d.size("test") == n
    assert d.num_classes == 10 and (d.in_channels, *d.image_size) == shape
    # fixed, stratified, seeded split
    again = load_dataset(name)
    assert torch.equal(d.test_y, again.test_y) and torch.equal(d.test_x, again.test_x)
    other = load_dataset(name, seed=1)
    assert not torch.equal(d.test_x, other.test_x)
    counts = torch.bincount(d.test_y, minlength=10).float()
    assert counts.min() / counts.max() > 0.8
    # batches come normalized with the training split's statistics
    xs = torch.cat([x for x, _ in d.batches("train", 512)])
    assert abs(float(xs.mean())) < 1e-3 and abs(float(xs.std()) - 1) < 1e-2
    assert len(xs) == d.size("train")


def test_batches_shuffle_with_the_generator_and_drop_last():
    d = load_dataset("digits")
    a = [y for _, y in d.batches("train", 100, shuffle=True, generator=torch.Generator().manual_seed(3))]
    b = [y for _, y in d.batches("train", 100, shuffle=True, generator=torch.Generator().manual_seed(3))]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    full = list(d.batches("train", 100, drop_last=True))
    assert all(len(y) == 100 for _, y in full) and len(full) == d.size("train") // 100


def test_synthetic_is_generated_and_learnable_shape():
    d = load_dataset("synthetic:n=400,classes=4,channels=2,size=12")
    assert (d.num_classes, d.in_channels, d.image_size) == (4, 2, (12, 12))
    assert d.size("train") == 320
    with pytest.raises(DataError, match="too small"):
        load_dataset("synthetic:n=4,classes=4")
    with pytest.raises(DataError, match="no parameter colour"):
        load_dataset("synthetic:colour=3")


def test_crop_flip_is_a_padded_crop_or_its_mirror():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = crop_flip(x, g, pad=2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        crops = [padded[i, :, a:a + 6, b:b + 6] for a in range(5) for b in range(5)]
        crops += [c.flip(-1) for c in crops]
        assert any(torch.equal(out[i], c) for c in crops)
    assert torch.equal(crop_flip(x, g, pad=0, flip=False), x)


def test_missing_download_is_one_clear_line(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "cifar10") in msg and "--download" in msg and "\n" not in msg


def test_unknown_dataset_lists_known():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; known datasets: digits, mnist5k"):
        load_dataset("imagenet")
    assert "imagefolder:PATH" in available_datasets()


def test_imagefolder_goes_through_a_dataloader(tmp_path):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for cls, level in (("cats", 40), ("dogs", 200)):
        (tmp_path / cls).mkdir()
        for i in range(10):
            pixels = (torch.rand(20, 24, 3, generator=g) * 50 + level).clamp(0, 255).to(torch.uint8)
            Image.fromarray(pixels.numpy()).save(tmp_path / cls / f"{i}.png")
    d = load_dataset(f"imagefolder:{tmp_path},size=16,workers=0")
    assert (d.num_classes, d.in_channels, d.image_size) == (2, 3, (16, 16))
    assert d.size("train") == 16 and d.size("test") == 4
    xb, yb = next(d.batches("train", 8, shuffle=True, generator=g))
    assert xb.shape == (8, 3, 16, 16) and set(yb.tolist()) <= {0, 1}
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")
