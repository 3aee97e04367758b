"""Limit/offset pagination with the answer shape the EPIC API documents."""

import re

from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination

# A page position as the API takes it: plain ASCII digits, at most 18 of them.
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


class EpicPagination(LimitOffsetPagination):
    """Pages of `count`, `next`, `previous`, `results`; at most 1000 results a page.

    A limit or offset that is not a whole number (or a limit of 0) is refused with a 400
    naming it, rather than quietly replaced by the default; a limit over 1000 gives 1000.
    """

    default_limit = 20
    max_limit = 1000

    def get_limit(self, request) -> int:
        """The page size asked for, at most max_limit."""
        given = request.query_params.get(self.limit_query_param)
        if given in (None, ""):
            return self.default_limit
        limit = _whole_number(self.limit_query_param, given)
        if limit == 0:
            raise serializers.ValidationError({self.limit_query_param: ["Must be at least 1."]})
        return min(limit, self.max_limit)

    def get_offset(self, request) -> int:
        """The index of the first result asked for."""
        given = request.query_params.get(self.offset_query_param)
        return 0 if given in (None, "") else _whole_number(self.offset_query_param, given)


def _whole_number(name: str, given: str) -> int:
    """A query parameter's whole number, or a 400 naming the parameter."""
    if not WHOLE_NUMBER.fullmatch(given):
        raise serializers.ValidationError({name: ["Must be a whole number (at most 18 digits)."]})
    return int(given)
