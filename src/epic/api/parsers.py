"""A JSON parser that answers 400 for documents nested too deeply to parse."""

from rest_framework import exceptions
from rest_framework.parsers import JSONParser


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, with pathological nesting refused as a parse error."""

    def parse(self, stream, media_type=None, parser_context=None):
        """Parse JSON; a RecursionError (thousands of nested levels) becomes a 400."""
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise exceptions.ParseError("JSON nested too deeply.") from error
