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
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")


@pytest.mark.parametrize("spec", ["digits", "mnist5k", "synthetic:n=400,classes=4,channels=2,size=12",
                                  "synthetic:n=333,classes=3"])
def test_check_dataset_agrees_with_the_loaded_set(spec):
    from normlab.data import check_dataset

    info = check_dataset(spec)
    d = load_dataset(spec)
    assert (info.num_classes, info.in_channels, info.image_size) == (d.num_classes, d.in_channels, d.image_size)
    assert (info.n_train, info.n_test) == (d.size("train"), d.size("test"))


def _images(folder, classes=("a", "b"), n=5, size=(10, 12)):
    from PIL import Image

    for cls in classes:
        (folder / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((torch.rand(*size, 3) * 255).to(torch.uint8).numpy()).save(folder / cls / f"{i}.png")


def test_check_imagefolder_without_decoding(tmp_path):
    from normlab.data import check_dataset

    _images(tmp_path / "flat", n=5)
    info = check_dataset(f"imagefolder:{tmp_path / 'flat'},size=8")
    assert (info.num_classes, info.in_channels, info.image_size, info.n_train, info.n_test) == (2, 3, (8, 8), 8, 2)
    _images(tmp_path / "split" / "train", n=4)
    _images(tmp_path / "split" / "val", n=2)
    info = check_dataset(f"imagefolder:{tmp_path / 'split'}")
    assert (info.n_train, info.n_test, info.image_size) == (8, 4, (32, 32))
    # every header is read (pixels are not decoded): a file that is not an image is named up front
    (tmp_path / "flat" / "a" / "bad.png").write_bytes(b"garbage")
    (tmp_path / "flat" / "b" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cannot decode image .*flat/a/bad.png.*1 more unreadable"):
        check_dataset(f"imagefolder:{tmp_path / 'flat'}")


@pytest.mark.parametrize("make,needle", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("x"), "is not a directory"),
    (lambda p: p.mkdir(), "no class folders"),
    (lambda p: ((p / "a").mkdir(parents=True), (p / "a" / "notes.txt").write_text("x")), "holds no images"),
])
def test_check_imagefolder_errors_are_one_line(tmp_path, make, needle):
    from normlab.data import check_dataset

    path = tmp_path / "data"
    make(path)
    with pytest.raises(DataError) as info:
        check_dataset(f"imagefolder:{path}")
    assert needle in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="no parameter colour"):
        check_dataset(f"imagefolder:{path},colour=1")


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_names_the_file(tmp_path, workers):
    _images(tmp_path, n=6)
    d = load_dataset(f"imagefolder:{tmp_path},size=8,workers={workers}")
    bad = tmp_path / "b" / "3.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError) as info:
        for _ in d.batches("train", 4):
            pass
        for _ in d.batches("test", 4):
            pass
    msg = str(info.value)
    assert str(bad) in msg and "\n" not in msg and "cannot decode image" in msg


def _write_idx(path, tensor, gz=True):
    import gzip
    import struct

    codes = {torch.uint8: 0x08, torch.int32: 0x0C}
    head = bytes([0, 0, codes[tensor.dtype], tensor.dim()]) + b"".join(struct.pack(">i", d) for d in tensor.shape)
    body = tensor.numpy().astype(">i4" if tensor.dtype == torch.int32 else "u1").tobytes()
    (gzip.open if gz else open)(path, "wb").write(head + body)


def test_read_idx_round_trips_big_endian(tmp_path):
    from normlab.data import read_idx

    x = torch.randint(0, 255, (5, 3, 4), dtype=torch.uint8)
    _write_idx(tmp_path / "x.gz", x)
    assert torch.equal(read_idx(tmp_path / "x.gz"), x)
    big = torch.tensor([[1, -2, 70000]], dtype=torch.int32)
    _write_idx(tmp_path / "i", big, gz=False)
    assert torch.equal(read_idx(tmp_path / "i"), big)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short")


def test_fashion_mnist_from_idx_files_offline(tmp_path, monkeypatch):
    """The Debian package's layout (four .gz IDX files in one folder) under $NORMLAB_DATA."""
    from normlab.data import check_dataset, downloads

    monkeypatch.setitem(downloads.SYSTEM_DIRS, "fashion-mnist", [])     # ignore an installed copy

    with pytest.raises(DataError) as info:
        check_dataset("fashion-mnist", root=tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(info.value) and str(tmp_path / "fashion-mnist") in str(info.value)
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 30), ("t10k", 10)):
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", torch.randint(0, 255, (n, 28, 28), generator=g, dtype=torch.uint8))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", (torch.arange(n) % 10).to(torch.uint8))
    assert check_dataset("fashion-mnist", root=tmp_path).num_classes == 10
    d = load_dataset("fashion-mnist", root=tmp_path)
    assert (d.size("train"), d.size("test"), d.in_channels, d.image_size) == (30, 10, 1, (28, 28))
    assert "IDX files" in d.info["source"]


@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist(tmp_path):
    d = load_dataset("fashion-mnist", root=tmp_path)
    assert (d.size("train"), d.size("test")) == (60000, 10000)
    assert torch.bincount(d.test_y).tolist() == [1000] * 10


def test_holdout_carves_a_stratified_validation_split_from_training():
    import torch

    from normlab.data import DataError, holdout, load_dataset

    data = load_dataset("digits")
    fit_data, test_data = holdout(data, 0.2, seed=0)
    n = data.size("train")
    assert fit_data.size("train") + fit_data.size("test") == n
    assert abs(fit_data.size("test") - round(0.2 * n)) <= 1
    assert torch.equal(test_data.train_x, fit_data.train_x)                # same training rest
    assert torch.equal(test_data.test_x, data.test_x)                      # the real test set
    # every class keeps its share of the validation split: stratified
    for c in range(10):
        share = float((fit_data.test_y == c).float().mean())
        assert abs(share - float((data.train_y == c).float().mean())) < 0.02
    assert fit_data.mean != data.mean                                      # statistics of the rest only
    assert holdout(data, 0.2, seed=0)[0].test_y.tolist() == fit_data.test_y.tolist()   # seeded
    with pytest.raises(DataError, match="val_fraction"):
        holdout(data, 1.0)
