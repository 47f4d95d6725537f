import json
import math
from pathlib import Path

import numpy as np
import pytest

import preprocess as pp

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def test_percentile_definition_is_floor_index_into_sorted_values():
    x = np.arange(1000, dtype=np.float64)[::-1].reshape(10, 100)  # any order
    n = 1000
    assert pp.percentile_index(0.005, n) == math.floor(0.005 * 999) == 4
    assert pp.percentile_index(0.995, n) == math.floor(0.995 * 999) == 994
    y = pp.normalise(x)
    # p_lo = 4, p_hi = 994
    assert y.min() == 0.0 and y.max() == 1.0
    assert y.ravel()[list(x.ravel()).index(500.0)] == pytest.approx((500 - 4) / 990)


def test_constant_image_gives_zeros():
    assert not pp.preprocess(np.full((50, 60), 7, np.uint16)).any()


def test_pad_square_centres_with_extra_pixel_bottom_right():
    img = np.ones((3, 6))
    sq = pp.pad_square(img)
    assert sq.shape == (6, 6)
    # top = floor((6-3)/2) = 1: rows 1..3 hold the image, one zero row above, two below
    assert [int(r.sum()) for r in sq] == [0, 6, 6, 6, 0, 0]


def test_resize_weights_rows_sum_to_one_and_identity_at_same_size():
    for n in (100, 224, 233, 512, 1000):
        w = pp.resize_weights(n)
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
        assert (w >= 0).all()
    np.testing.assert_allclose(pp.resize_weights(224), np.eye(224), atol=0)


def test_resize_2x_downsample_is_triangle_filter():
    # 448 -> 224: scale 2, support 2: taps j = 2i-1 .. 2i+2 with weights 1/8, 3/8, 3/8, 1/8
    w = pp.resize_weights(448)
    np.testing.assert_allclose(w[10, 19:23], [1 / 8, 3 / 8, 3 / 8, 1 / 8], atol=1e-12)
    # at the border the out-of-range tap is dropped and the rest renormalised
    np.testing.assert_allclose(w[0, 0:3], np.array([3, 3, 1]) / 7, atol=1e-12)


def test_luma_coefficients():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 50, 200
    assert pp.to_gray(rgb)[0, 0] == pytest.approx(0.299 * 100 + 0.587 * 50 + 0.114 * 200)


def test_output_contract():
    x = pp.preprocess(np.random.default_rng(0).integers(0, 4096, (300, 200)).astype(np.uint16))
    assert x.shape == (224, 224) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1


@pytest.mark.skipif(not (GOLDEN / "manifest.json").exists(), reason="no golden vectors")
def test_golden_vectors_reproduce():
    man = json.loads((GOLDEN / "manifest.json").read_text())
    assert len(man["cases"]) >= 3
    total = sum(p.stat().st_size for p in GOLDEN.iterdir())
    assert total < 3_200_000  # small enough for git: 3.0 MB with the one 320 case and the odd/small/float cases
    for c in man["cases"]:
        dt = {"uint16": "<u2", "float32": "<f4"}.get(c["pixels"]["dtype"], "u1")
        pix = np.fromfile(GOLDEN / c["pixels"]["file"], dt).reshape(c["pixels"]["shape"])
        if c["image"] is not None:  # the float case has pixels only
            np.testing.assert_array_equal(pp.load_image(str(GOLDEN / c["image"])), pix)
        expected = np.fromfile(GOLDEN / c["input"]["file"], "<f4").reshape(224, 224)
        np.testing.assert_allclose(pp.preprocess(pix), expected, atol=1e-6)
        for o in c.get("inputs_other_sizes", []):
            expected = np.fromfile(GOLDEN / o["file"], "<f4").reshape(o["size"], o["size"])
            np.testing.assert_allclose(pp.preprocess(pix, out_size=o["size"]), expected, atol=1e-6)
    assert any(c.get("inputs_other_sizes") for c in man["cases"])


REPO = Path(__file__).resolve().parents[3]
SLICE = REPO / "test" / "fixtures" / "figshare-sample" / "images" / "722.jpg"


def png16(samples, colour_type, filters=(0, 1, 2, 3, 4)):
    """A 16-bit PNG of samples [H,W,C], each row under the next of the five PNG filters (spec 9.2), so a
    decoder is checked on every one; checked against pngjs's decoder (what `cbmir load` uses)."""
    import struct
    import zlib

    h, w, ch = samples.shape
    raw = samples.astype(">u2").view(np.uint8).reshape(h, w * ch * 2).astype(np.int64)
    bpp, prev, body = ch * 2, np.zeros(raw.shape[1], np.int64), b""
    for y in range(h):
        x, ft = raw[y], filters[y % len(filters)]
        left = np.concatenate([np.zeros(bpp, np.int64), x[:-bpp]])
        ul = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        p = left + prev - ul
        pa, pb, pc = abs(p - left), abs(p - prev), abs(p - ul)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, ul))
        pred = {0: 0, 1: left, 2: prev, 3: (left + prev) >> 1, 4: paeth}[ft]
        body += bytes([ft]) + ((x - pred) & 255).astype(np.uint8).tobytes()
        prev = x

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b""))


def slice16():
    """A real slice (figshare-cheng 722) spread over 16 bits as golden.py's 16-bit case: x*173+900, so
    that the low byte of every sample matters."""
    from PIL import Image

    return np.array(Image.open(SLICE)).astype(np.uint16) * 173 + 900


def test_a_16_bit_png_with_alpha_or_colour_keeps_all_its_bits(tmp_path):
    # PIL opens these as 8-bit RGBA / RGB: the gray values would silently lose their low byte.
    g = slice16()
    alpha = (np.arange(g.size).reshape(g.shape) * 7919 % 65536).astype(np.uint16)
    (tmp_path / "ga.png").write_bytes(png16(np.stack([g, alpha], -1), 4))
    (tmp_path / "rgb.png").write_bytes(png16(np.stack([g, 65535 - g, alpha], -1), 2))
    (tmp_path / "rgba.png").write_bytes(png16(np.stack([g, g, g, alpha], -1), 6))
    ga = pp.load_image(str(tmp_path / "ga.png"))
    assert ga.dtype == np.uint16 and ga.shape == g.shape
    np.testing.assert_array_equal(ga, g)
    rgb = pp.load_image(str(tmp_path / "rgb.png"))
    assert rgb.dtype == np.uint16
    np.testing.assert_array_equal(rgb, np.stack([g, 65535 - g, alpha], -1))
    np.testing.assert_array_equal(pp.load_image(str(tmp_path / "rgba.png"))[..., 0], g)
    # gray+alpha preprocesses exactly as the same gray values without alpha
    np.testing.assert_array_equal(pp.preprocess_file(str(tmp_path / "ga.png")), pp.preprocess(g))


def test_a_multi_frame_file_is_refused_not_cut_to_its_first_frame(tmp_path):
    from PIL import Image

    frames = [Image.open(REPO / "test" / "fixtures" / "figshare-sample" / "images" / f) for f in ("1.jpg", "20.jpg")]
    frames[0].save(tmp_path / "two.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"2 frames \(a multi-frame TIFF file\)"):
        pp.load_image(str(tmp_path / "two.tif"))


def test_a_16_bit_png_declaring_more_pixels_than_a_frame_may_hold_is_refused_before_inflating(tmp_path):
    """A few hundred bytes that declare 8192 x 8192 16-bit gray+alpha pixels (a decompression bomb):
    refused from the header, not inflated to 512 MiB."""
    import struct
    import zlib

    from preprocess import read_png16

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    w = h = 8192
    bomb = zlib.compress(b"\0" * (w * 4 + 1) * 64, 9)  # the first 64 rows; the rest would be more of the same
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)) + chunk(b"IDAT", bomb) + chunk(b"IEND", b"")
    p = tmp_path / "bomb.png"
    p.write_bytes(png)
    with pytest.raises(ValueError, match=r"8192x8192 pixels: over the"):
        read_png16(str(p))
