# Regenerates the Pillow golden files for imageops tests (run with Debian 12's python3-pil 9.4.0
# and python3-numpy: /usr/bin/python3 gen.py). Inputs are seeded random bytes; outputs are
# what Pillow's Image.resize and diffusers' apply_overlay (v0.29.0 code, inlined) produce.
import numpy as np
from PIL import Image, ImageOps

rng = np.random.default_rng(0)
src = rng.integers(0, 256, (63, 29, 3), dtype=np.uint8)  # H=63, W=29
im = Image.fromarray(src, "RGB")
open("src.bin", "wb").write(src.tobytes())
for name, f in [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC), ("lanczos", Image.LANCZOS)]:
    for (w, h) in [(128, 128), (13, 40), (29, 17), (50, 63)]:
        open(f"{name}_{w}x{h}.bin", "wb").write(np.array(im.resize((w, h), f)).tobytes())

W = 64
init = Image.fromarray(rng.integers(0, 256, (W, W, 3), dtype=np.uint8), "RGB")
m = np.zeros((W, W), np.uint8)
m[20:30, 10:40] = rng.integers(0, 256, (10, 30))
m[22:28, 15:35] = 255
mask = Image.fromarray(m, "L").convert("RGB")
gen = Image.fromarray(rng.integers(0, 256, (W, W, 3), dtype=np.uint8), "RGB")
x, y, x2, y2 = (8, 0, 42, 34)
# diffusers VaeImageProcessor.apply_overlay
init_masked = Image.new("RGBa", (W, W))
init_masked.paste(init.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
init_masked = init_masked.convert("RGBA")
base = Image.new("RGBA", (W, W))
g = gen.resize((x2 - x, y2 - y), Image.LANCZOS)
base.paste(g, (x, y))
image = base.convert("RGB").convert("RGBA")
image.alpha_composite(init_masked)
out = np.array(image.convert("RGB"))
for n, a in [("ov_init", np.array(init)), ("ov_mask", m), ("ov_gen", np.array(g)), ("ov_out", out)]:
    open(n + ".bin", "wb").write(a.tobytes())
