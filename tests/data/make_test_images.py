#!/usr/bin/python3
"""Generates the small decode test files in tests/data (run with /usr/bin/python3).

    /usr/bin/python3 tests/data/make_test_images.py [PHOTOS_DIR]

Pixel content is cropped from the real photographs in ../shared/data/photos (see SOURCES.txt, which
this script writes next to the files). Every tricky file comes with a plain reference written by
this script (a *_ref.png) whose pixels are what a correct decoder must return, computed here with
numpy from the source pixels, not by decoding the tricky file.

Needs python3-pil, python3-numpy, python3-opencv (only to read the stored pixels of the EXIF JPEGs),
and for the arithmetic-coded JPEG `jpegtran` from libjpeg-turbo-progs (skipped with a note when
missing; the committed file is kept).
"""
import io
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", ".."))
PHOTOS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SOURCE, "..", "shared", "data", "photos")


def out(name):
    return os.path.join(HERE, name)


def write(name, data):
    with open(out(name), "wb") as f:
        f.write(data)


def crop(photo, x, y, w, h):
    """RGB uint8 array h×w×3 cut from a photo."""
    im = Image.open(os.path.join(PHOTOS, photo)).convert("RGB")
    return np.asarray(im.crop((x, y, x + w, y + h))).copy()


def save_png_pil(name, arr, mode=None):
    Image.fromarray(arr, mode).save(out(name), optimize=False)


# ---------------------------------------------------------------- PNG writer (full control of
# colour type, bit depth, palette, tRNS, interlacing and filters, which PIL does not give)


def chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(raw_rows, bpp):
    """Applies filter type (row index % 5) to each row: exercises all five PNG filters."""
    outb = bytearray()
    prev = bytes(len(raw_rows[0])) if raw_rows else b""
    for i, row in enumerate(raw_rows):
        ft = i % 5
        f = bytearray(len(row))
        for x in range(len(row)):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ft]
            f[x] = (row[x] - pred) & 0xFF
        outb.append(ft)
        outb += f
        prev = row
    return bytes(outb)


def pack_rows(samples, bit_depth):
    """samples: h×(w*spp) integer array -> list of packed byte rows."""
    rows = []
    for r in samples:
        if bit_depth == 16:
            rows.append(b"".join(struct.pack(">H", int(v)) for v in r))
        elif bit_depth == 8:
            rows.append(bytes(int(v) for v in r))
        else:
            per = 8 // bit_depth
            bs = bytearray()
            for i in range(0, len(r), per):
                byte = 0
                for j in range(per):
                    v = int(r[i + j]) if i + j < len(r) else 0
                    byte |= v << (8 - bit_depth * (j + 1))
                bs.append(byte)
            rows.append(bytes(bs))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def make_png(samples, color_type, bit_depth, palette=None, trns=None, interlace=False, extra=()):
    """samples: h×w×spp array of sample values (palette indices for colour type 3)."""
    h, w = samples.shape[:2]
    spp = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    samples = samples.reshape(h, w, spp)
    bpp = max(1, spp * bit_depth // 8)
    if interlace:
        data = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                data += filter_rows(pack_rows(sub.reshape(sub.shape[0], -1), bit_depth), bpp)
    else:
        data = filter_rows(pack_rows(samples.reshape(h, -1), bit_depth), bpp)
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    for kind, payload in extra:
        png += chunk(kind, payload)
    if palette is not None:
        png += chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    # Several IDAT chunks, as real encoders write.
    z = zlib.compress(data, 9)
    for i in range(0, len(z), 1000):
        png += chunk(b"IDAT", z[i:i + 1000])
    png += chunk(b"IEND", b"")
    return png


# ---------------------------------------------------------------- EXIF


def exif_app1(orientation, big_endian):
    """APP1 segment (marker included) whose IFD0 holds Make (a string stored at an offset),
    Orientation and XResolution, so a parser must walk past other entries."""
    e = ">" if big_endian else "<"
    make = b"imgnorm test\0"
    n = 3
    ifd_off = 8
    data_off = ifd_off + 2 + n * 12 + 4
    make_off = data_off
    xres_off = make_off + len(make)
    tiff = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, ifd_off)
    tiff += struct.pack(e + "H", n)
    tiff += struct.pack(e + "HHII", 0x010F, 2, len(make), make_off)
    # SHORT value left-justified in the 4-byte field (the spec; matters for big-endian files).
    tiff += struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack(e + "HHII", 0x011A, 5, 1, xres_off)
    tiff += struct.pack(e + "I", 0)
    tiff += make + struct.pack(e + "II", 72, 1)
    payload = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def insert_after_soi(jpeg, segment):
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + segment + jpeg[2:]


def orient(a, k):
    """The EXIF orientation transform (TIFF 6.0 / EXIF 2.3 definition) applied to stored pixels."""
    if k == 2:
        return a[:, ::-1]
    if k == 3:
        return a[::-1, ::-1]
    if k == 4:
        return a[::-1]
    t = a.transpose(1, 0, 2)
    if k == 5:
        return t
    if k == 6:
        return t[:, ::-1]
    if k == 7:
        return t[::-1, ::-1]
    if k == 8:
        return t[::-1]
    return a


def jpeg_bytes(img, **kw):
    b = io.BytesIO()
    img.save(b, "JPEG", **kw)
    return b.getvalue()


def main():
    import cv2  # only for the stored pixels of a JPEG, see below

    # Remove files from earlier runs so the folder holds exactly what this script makes.
    for f in os.listdir(HERE):
        if f.endswith((".jpg", ".png", ".webp", ".txt")) and f != "arith.jpg":
            os.remove(out(f))

    cups = crop("colorfulcups.jpg", 700, 400, 41, 31)
    leaf = crop("fallenleaf.jpg", 1350, 400, 33, 17)
    hills = crop("path.jpg", 250, 150, 37, 23)
    kite = crop("kite.jpg", 200, 200, 29, 19)
    big = crop("autumn.jpg", 400, 800, 203, 157)

    # JPEG variants (PIL over libjpeg-turbo).
    write("jpeg_420.jpg", jpeg_bytes(Image.fromarray(cups), quality=90, subsampling=2))
    write("jpeg_422.jpg", jpeg_bytes(Image.fromarray(cups), quality=90, subsampling=1))
    write("jpeg_444.jpg", jpeg_bytes(Image.fromarray(leaf), quality=90, subsampling=0))
    write("jpeg_progressive.jpg", jpeg_bytes(Image.fromarray(hills), quality=85, progressive=True))
    write("jpeg_gray.jpg", jpeg_bytes(Image.fromarray(hills).convert("L"), quality=90))
    # PIL writes CMYK with an Adobe APP14 marker and inverted samples, as Photoshop does.
    write("jpeg_cmyk.jpg", jpeg_bytes(Image.fromarray(kite).convert("CMYK"), quality=92))
    # YCCK: no tool here writes it directly. Do what libjpeg's cmyk_ycck_convert does for an
    # Adobe (inverted) CMYK input C' = 255 - C: Y/Cb/Cr from (255 - C', ...) = (C, M, Y), K' kept.
    # Hand the four planes to PIL as "CMYK" (it stores them inverted, so pass the complement),
    # then set the Adobe transform byte to 2 (YCCK). libjpeg converts back to C', M', Y', K'.
    cmyk = np.asarray(Image.fromarray(kite).convert("CMYK")).astype(np.float64)
    r, g, b = cmyk[..., 0], cmyk[..., 1], cmyk[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168735892 * r - 0.331264108 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418687589 * g - 0.081312411 * b + 128
    ycck = np.stack([y, cb, cr, 255 - cmyk[..., 3]], -1).round().clip(0, 255).astype(np.uint8)
    # PIL inverts CMYK samples on save ("CMYK;I"), so hand it the complement.
    data = jpeg_bytes(Image.fromarray(255 - ycck, "CMYK"), quality=92)
    pos = data.find(b"Adobe")
    assert pos > 4 and data[pos - 4:pos - 2] == b"\xff\xee", "PIL did not write an Adobe marker"
    data = bytearray(data)
    assert data[pos + 11] == 0  # transform byte of APP14 (after "Adobe", version, flags0, flags1)
    data[pos + 11] = 2
    write("jpeg_ycck.jpg", bytes(data))
    write("jpeg_1x1.jpg", jpeg_bytes(Image.fromarray(cups[:1, :1]), quality=90))
    write("jpeg_prescale.jpg", jpeg_bytes(Image.fromarray(big), quality=80))
    base = jpeg_bytes(Image.fromarray(big), quality=80)
    write("jpeg_truncated.jpg", base[: len(base) * 6 // 10])
    prog = jpeg_bytes(Image.fromarray(big), quality=80, progressive=True)
    write("jpeg_truncated_progressive.jpg", prog[: len(prog) // 2])
    # Arithmetic coding: transcoded losslessly by jpegtran, so it decodes to the same pixels as
    # jpeg_420.jpg (jpeg_420.jpg is the reference).
    if shutil.which("jpegtran"):
        p = subprocess.run(["jpegtran", "-arithmetic", out("jpeg_420.jpg")], capture_output=True, check=True)
        write("jpeg_arith.jpg", p.stdout)
    elif not os.path.exists(out("jpeg_arith.jpg")):
        print("note: jpegtran (libjpeg-turbo-progs) missing: jpeg_arith.jpg not made")

    # EXIF orientation 1-8 over the same JPEG data (alternating II and MM byte order), and the
    # reference for each: the stored pixels with the EXIF transform applied here in numpy.
    plain = jpeg_bytes(Image.fromarray(hills), quality=90, subsampling=2)
    write("exif_none.jpg", plain)
    stored = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    for k in range(1, 9):
        write(f"exif_{k}.jpg", insert_after_soi(plain, exif_app1(k, big_endian=(k % 2 == 0))))
        save_png_pil(f"exif_{k}_ref.png", np.ascontiguousarray(orient(stored, k)))
    # A malformed EXIF (IFD offset far outside the segment): orientation ignored.
    bad = bytearray(exif_app1(6, False))
    struct.pack_into("<I", bad, 4 + 6 + 4, 0x7FFFFFF0)
    write("exif_bad_offset.jpg", insert_after_soi(plain, bytes(bad)))

    # PNG variants.
    save_png_pil("png_rgb.png", cups)
    rgba = np.dstack([cups, (np.arange(41 * 31).reshape(31, 41) * 7 % 256).astype(np.uint8)])
    write("png_rgba.png", make_png(rgba, 6, 8))
    gray = np.asarray(Image.fromarray(leaf).convert("L"))
    save_png_pil("png_gray.png", gray)
    ga = np.dstack([gray, 255 - gray])
    write("png_gray_alpha.png", make_png(ga, 4, 8))
    # Palette: quantize the photo; the reference is the same colours as an RGB PNG.
    pal_img = Image.fromarray(hills).quantize(colors=64, dither=Image.Dither.NONE)
    idx = np.asarray(pal_img)
    palette = np.asarray(pal_img.getpalette()[: 64 * 3], np.uint8).reshape(-1, 3)
    write("png_palette.png", make_png(idx, 3, 8, palette=palette))
    trns = bytes((i * 37) % 256 for i in range(40))  # alpha for the first 40 entries only
    write("png_palette_trns.png", make_png(idx, 3, 8, palette=palette, trns=trns))
    save_png_pil("png_palette_ref.png", palette[idx])
    # Low bit depth palette (4-bit, 16 colours).
    pal4 = Image.fromarray(kite).quantize(colors=16, dither=Image.Dither.NONE)
    idx4 = np.asarray(pal4)
    palette4 = np.asarray(pal4.getpalette()[: 16 * 3], np.uint8).reshape(-1, 3)
    write("png_palette4.png", make_png(idx4, 3, 4, palette=palette4))
    save_png_pil("png_palette4_ref.png", palette4[idx4])
    # 1, 2, 4-bit gray: the reference expands v to v * 255 / (2^d - 1), as libpng does.
    for d in (1, 2, 4):
        q = (gray.astype(np.int32) >> (8 - d)).astype(np.uint8)
        write(f"png_gray{d}.png", make_png(q, 0, d))
        save_png_pil(f"png_gray{d}_ref.png", (q.astype(np.int32) * 255 // ((1 << d) - 1)).astype(np.uint8))
    # 1-bit gray with tRNS: transparency must be ignored.
    q1 = (gray >> 7).astype(np.uint8)
    write("png_gray1_trns.png", make_png(q1, 0, 1, trns=struct.pack(">H", 1)))
    # 16-bit: high byte = the 8-bit image, low byte = noise, so only >> 8 gives the 8-bit reference
    # (rounding or v*255/65535 scaling would differ on many samples).
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, cups.shape)
    write("png_rgb16.png", make_png(cups.astype(np.int64) * 256 + noise, 2, 16))
    noise_a = rng.integers(0, 256, rgba.shape)
    write("png_rgba16.png", make_png(rgba.astype(np.int64) * 256 + noise_a, 6, 16))
    noise_g = rng.integers(0, 256, gray.shape)
    write("png_gray16.png", make_png(gray.astype(np.int64) * 256 + noise_g, 0, 16))
    write("png_gray_alpha16.png", make_png(ga.astype(np.int64) * 256 + rng.integers(0, 256, ga.shape), 4, 16))
    # Interlaced (Adam7) RGB and palette.
    write("png_interlaced.png", make_png(cups, 2, 8, interlace=True))
    write("png_palette4_interlaced.png", make_png(idx4, 3, 4, palette=palette4, interlace=True))
    # RGB with gAMA (1/2.2) and sRGB chunks: libpng's RGB->gray then works in linear light.
    write("png_rgb_gama.png", make_png(cups, 2, 8, extra=[(b"gAMA", struct.pack(">I", 45455))]))
    write("png_rgb_srgb.png", make_png(cups, 2, 8, extra=[(b"sRGB", b"\0"), (b"gAMA", struct.pack(">I", 45455))]))
    # eXIf with orientation 6 (does the decoder apply it? cv2 4.6 does not for PNG).
    tiff = exif_app1(6, False)[4 + 6:]
    write("png_exif6.png", make_png(cups, 2, 8, extra=[(b"eXIf", tiff)]))
    write("png_1x1.png", make_png(cups[:1, :1], 2, 8))
    full = make_png(cups, 2, 8)
    write("png_truncated.png", full[: len(full) * 6 // 10])
    crc_bad = bytearray(full)
    idat = crc_bad.find(b"IDAT")
    length = struct.unpack(">I", crc_bad[idat - 4: idat])[0]
    crc_bad[idat + 4 + length] ^= 0xFF  # first byte of the first IDAT's CRC
    write("png_bad_crc.png", bytes(crc_bad))
    # Bad CRC in an ancillary chunk: libpng (cv2) and we discard the chunk and decode.
    anc = make_png(cups, 2, 8, extra=[(b"tEXt", b"Comment\0hello")])
    anc = bytearray(anc)
    t = anc.find(b"tEXt")
    anc[t + 4 + len(b"Comment\0hello")] ^= 0xFF
    write("png_bad_crc_ancillary.png", bytes(anc))

    # WebP.
    def webp(name, arr, **kw):
        b = io.BytesIO()
        Image.fromarray(arr).save(b, "WEBP", **kw)
        write(name, b.getvalue())

    webp("webp_lossy.webp", cups, quality=80)
    webp("webp_lossless.webp", leaf, lossless=True)
    webp("webp_lossless_alpha.webp", rgba, lossless=True, exact=True)  # keep RGB under alpha 0
    webp("webp_lossy_alpha.webp", rgba, quality=80)
    webp("webp_1x1.webp", cups[:1, :1], lossless=True)
    save_png_pil("webp_lossless_ref.png", leaf)
    b = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(cups).save(b, "WEBP", lossless=True, exif=exif.tobytes())
    write("webp_exif6.webp", b.getvalue())
    w = open(out("webp_lossy.webp"), "rb").read()
    write("webp_truncated.webp", w[: len(w) // 2])

    # Headers that claim 60000 x 60000 pixels (checked before any allocation).
    j = bytearray(open(out("jpeg_420.jpg"), "rb").read())
    sof = j.find(b"\xff\xc0")
    struct.pack_into(">HH", j, sof + 5, 60000, 60000)
    write("huge_header.jpg", bytes(j))
    p = bytearray(full)
    struct.pack_into(">II", p, 16, 60000, 60000)
    struct.pack_into(">I", p, 29, zlib.crc32(bytes(p[12:29])))
    write("huge_header.png", bytes(p))

    # Not images.
    write("empty.jpg", b"")
    write("text.jpg", b"This is a text file, not a JPEG.\n")
    write("gif_as.png", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

    with open(out("SOURCES.txt"), "w") as f:
        f.write(
            "Files here are generated by make_test_images.py from crops of real photographs:\n"
            "colorfulcups, fallenleaf, path, kite, autumn from plasma-workspace-wallpapers\n"
            "4:5.27.5-2 (KDE Visual Design Group, GPL-2+), via ../shared/data/photos.\n")
    total = sum(os.path.getsize(out(f)) for f in os.listdir(HERE) if f != "make_test_images.py")
    print(f"wrote {len(os.listdir(HERE)) - 1} files, {total} bytes")


if __name__ == "__main__":
    main()
