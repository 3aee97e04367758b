"""Serializer fields that refuse values of the wrong JSON type instead of coercing them."""

from rest_framework import serializers


class StrictBooleanField(serializers.BooleanField):
    """A boolean that must be JSON true or false, not a string or a number."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        """Accept only real booleans."""
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictIntegerField(serializers.IntegerField):
    """An integer that must be a JSON number without a fraction, not a string or a boolean."""

    default_error_messages = {"invalid": "Must be a whole number."}

    def to_internal_value(self, data):
        """Accept only ints (and floats with no fraction), then check the bounds."""
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        if isinstance(data, float) and not data.is_integer():
            self.fail("invalid")
        return super().to_internal_value(int(data))


class StrictCharField(serializers.CharField):
    """A string that must be a JSON string, not a number or a boolean."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data):
        """Accept only strings, then apply CharField's rules."""
        if not isinstance(data, str):
            self.fail("invalid")
        if "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)
