"""A tiny RGB canvas written as PNG with zlib and struct: rectangles, lines, 5x7 bitmap text.

The bench draws one picture; this keeps it free of plotting libraries (nothing to
install, nothing that can fail to install on a fresh Debian in CI). Coordinates are
pixels, origin top left; colours are ``(r, g, b)`` bytes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

Colour = tuple[int, int, int]

# The classic 5x7 ASCII font (space to "~"): 5 column bytes per glyph, bit 0 at the top.
_FONT_HEX = (  # 8 glyphs, 10 hex digits each, a line
    "000000000000005f00000007000700147f147f14242a7f2a12231308646236495522500005030000"
    "001c2241000041221c00082a1c2a0808083e08080050300000080808080800606000002010080402"
    "3e5149453e00427f400042615149462141454b311814127f1027454545393c4a4949300171090503"
    "3649494936064949291e003636000000563600000008142241141414141441221408000201510906"
    "324979413e7e1111117e7f494949363e414141227f4141221c7f494949417f090901013e41415132"
    "7f0808087f00417f41002040413f017f081422417f404040407f0204027f7f0408107f3e4141413e"
    "7f090909063e4151215e7f09192946464949493101017f01013f4040403f1f2040201f7f2018207f"
    "63140814630304780403615149454300007f4141020408102041417f000004020102044040404040"
    "000102040020545454787f484444383844444420384444487f3854545418087e090102081454543c"
    "7f0804047800447d40002040443d00007f10284400417f40007c041804787c080404783844444438"
    "7c14141408081414187c7c080404084854545420043f4440203c4040207c1c2040201c3c4030403c"
    "44281028440c5050503c4464544c44000836410000007f000000413608000804081008"
)
_FONT = bytes.fromhex(_FONT_HEX)
GLYPH_W, GLYPH_H = 5, 7
"""A glyph's size in font pixels; text advances 6 font pixels per character."""


class Canvas:
    """An RGB image in memory.

    Args:
        width: in pixels.
        height: in pixels.
        background: the initial colour of every pixel.
    """

    def __init__(self, width: int, height: int, background: Colour = (255, 255, 255)) -> None:
        self.width = width
        self.height = height
        self._rows = [bytearray(bytes(background) * width) for _ in range(height)]

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: Colour) -> None:
        """Fill the rectangle [x0, x1) x [y0, y1), clipped to the canvas (pixels)."""
        left, right = max(0, round(x0)), min(self.width, round(x1))
        top, bottom = max(0, round(y0)), min(self.height, round(y1))
        if left >= right or top >= bottom:
            return
        run = bytes(colour) * (right - left)
        for y in range(top, bottom):
            self._rows[y][left * 3 : right * 3] = run

    def hline(self, x0: float, x1: float, y: float, colour: Colour, width: int = 1) -> None:
        """A horizontal line from x0 to x1 at y, ``width`` pixels thick."""
        self.rect(min(x0, x1), y, max(x0, x1) + 1, y + width, colour)

    def vline(self, x: float, y0: float, y1: float, colour: Colour, width: int = 1) -> None:
        """A vertical line from y0 to y1 at x, ``width`` pixels thick."""
        self.rect(x, min(y0, y1), x + width, max(y0, y1) + 1, colour)

    def dashed_vline(self, x: float, y0: float, y1: float, colour: Colour, dash: int = 4) -> None:
        """A vertical dashed line, ``dash`` pixels on and off."""
        y = min(y0, y1)
        while y < max(y0, y1):
            self.vline(x, y, min(y + dash - 1, max(y0, y1)), colour)
            y += 2 * dash

    def text(self, x: float, y: float, text: str, colour: Colour, scale: int = 1) -> None:
        """Draw ``text`` with its top left corner at (x, y); unknown characters show as "?"."""
        for index, char in enumerate(text):
            code = ord(char) if 32 <= ord(char) <= 126 else ord("?")
            glyph = _FONT[(code - 32) * GLYPH_W : (code - 31) * GLYPH_W]
            left = x + index * (GLYPH_W + 1) * scale
            for column, bits in enumerate(glyph):
                for row in range(GLYPH_H):
                    if bits >> row & 1:
                        self.rect(
                            left + column * scale,
                            y + row * scale,
                            left + (column + 1) * scale,
                            y + (row + 1) * scale,
                            colour,
                        )

    @staticmethod
    def text_width(text: str, scale: int = 1) -> int:
        """Width of ``text`` drawn at ``scale`` (pixels), without the trailing gap."""
        return max(0, len(text) * (GLYPH_W + 1) * scale - scale)

    def png(self) -> bytes:
        """The image as PNG bytes (8-bit RGB, no interlace)."""
        raw = b"".join(b"\x00" + bytes(row) for row in self._rows)
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b"")
        )

    def save(self, path: Path) -> None:
        """Write the image to ``path`` as PNG."""
        path.write_bytes(self.png())


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )
