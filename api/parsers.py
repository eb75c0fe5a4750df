"""DRF's JSON parser with the nesting bound of `keychest.jsonsafe` (every API body goes through it)."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from keychest import jsonsafe


class JSONParser(parsers.JSONParser):
    """Parses JSON bodies; too deep a document is a parse error (400), not a RecursionError."""

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        # DRF's own charset choice, which refuses bytes-to-bytes codecs (a decompression bomb).
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        try:
            text = codecs.getreader(encoding)(stream).read()
            return jsonsafe.loads(text, strict_constants=self.strict)
        except ValueError as exc:  # UnicodeDecodeError and JSONTooDeep are ValueErrors too
            raise ParseError(f"JSON parse error - {exc}") from None
