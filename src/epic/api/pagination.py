"""Limit/offset pagination with the answer shape the EPIC API documents."""

from rest_framework.pagination import LimitOffsetPagination


class EpicPagination(LimitOffsetPagination):
    """Pages of `count`, `next`, `previous`, `results`; at most 1000 results a page."""

    default_limit = 20
    max_limit = 1000
