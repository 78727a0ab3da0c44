"""The one door for untrusted image bytes: every hostile shape refused by its header, with its own code,
and decoding a big-but-allowed image costs a bounded amount of memory (measured in a fresh process)."""
import io

import pytest
from PIL import Image

from fullstack_ml.images import BadImage, ImageLimits, check_image, decode_image, peak_decode_mb, sniff_format


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def animation(fmt: str, n: int = 50) -> bytes:
    frames = [Image.new("L", (32, 32), 5 * k) for k in range(n)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:])


def refusal(data: bytes, decode: bool = False, limits: ImageLimits = ImageLimits()) -> BadImage:
    with pytest.raises(BadImage) as caught:
        (decode_image if decode else check_image)(data, limits)
    return caught.value


HOSTILE = {
    "wide strip 65536x256 (17 KB)": (lambda: encode(Image.new("L", (65536, 256))), "side_too_long"),
    "tall strip 256x65536": (lambda: encode(Image.new("L", (256, 65536))), "side_too_long"),
    "wide WebP 16383x256": (lambda: encode(Image.new("L", (16383, 256)), "WEBP", lossless=True), "side_too_long"),
    "ribbon 8000x100": (lambda: encode(Image.new("L", (8000, 100))), "aspect_ratio"),
    "pixel bomb 6000x6000 PNG": (lambda: encode(Image.new("1", (6000, 6000))), "too_many_pixels"),
    "pixel bomb 6000x6000 JPEG": (lambda: encode(Image.new("L", (6000, 6000)), "JPEG", quality=5), "too_many_pixels"),
    "animated GIF": (lambda: animation("GIF"), "too_many_frames"),
    "APNG": (lambda: animation("PNG"), "too_many_frames"),
    "animated WebP": (lambda: animation("WEBP"), "too_many_frames"),
    "tracking pixel": (lambda: encode(Image.new("L", (1, 1))), "too_small"),
    "PNG magic on JPEG bytes": (lambda: b"\x89PNG\r\n\x1a\n" + encode(Image.new("L", (64, 64)), "JPEG"), "corrupt"),
    "EPS named .png": (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not_an_image"),
    "TIFF": (lambda: encode(Image.new("L", (64, 64)), "TIFF"), "not_an_image"),
    "empty": (lambda: b"", "not_an_image"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_image_is_refused_by_its_header_with_its_code(name):
    make, code = HOSTILE[name]
    data = make()
    assert refusal(data).code == code
    assert refusal(data, decode=True).code == code


def test_the_issue_strip_is_small_on_the_wire():
    assert len(HOSTILE["wide strip 65536x256 (17 KB)"][0]()) < 20_000


def test_truncated_image_is_refused_when_decoded():
    whole = encode(Image.effect_noise((128, 128), 50).convert("L"))
    error = refusal(whole[: len(whole) // 2], decode=True)
    assert error.code == "corrupt" and "truncated" in str(error)


def test_too_many_bytes_refused_before_anything_else():
    assert refusal(b"\x89PNG\r\n\x1a\n" + b"\0" * 200, limits=ImageLimits(max_bytes=100)).code == "too_large"


def test_allowed_images_are_described_and_decoded_small():
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP"):
        data = encode(Image.new("RGB", (600, 400), "white"), fmt)
        assert sniff_format(data) == fmt
        assert check_image(data) == dict(format=fmt, width=600, height=400, mode=check_image(data)["mode"], frames=1)
        assert decode_image(data, max_side_out=60).size == (60, 40)
    assert check_image(animation("GIF", 5), ImageLimits(max_frames=5))["frames"] == 5


def test_decoding_a_big_allowed_jpeg_small_stays_within_a_few_mb():
    side = Image.radial_gradient("L").resize((5000, 3000)).convert("RGB")
    big = encode(side, "JPEG", quality=85)
    assert check_image(big)["width"] == 5000  # allowed: 15 Mpx
    full, reduced = peak_decode_mb(big), peak_decode_mb(big, max_side_out=512)
    assert full > 35, full  # the measure sees a full decode (45 MB of pixels)...
    assert reduced < 10, reduced  # ...and draft() keeps the reduced one from ever holding it


def test_decoding_the_largest_allowed_png_is_bounded():
    big = encode(Image.new("RGB", (4000, 4000), "white"))  # 16 Mpx: the limit; PNG has no reduced decode
    assert peak_decode_mb(big, max_side_out=512) < 80
