"""Serializers for teams and profile settings."""

from rest_framework import serializers

from epic.accounts.models import Membership, Profile, Team


class TeamSerializer(serializers.ModelSerializer):
    """A team as its members see it, with the caller's role."""

    number_of_members = serializers.SerializerMethodField()
    user_role = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ["id", "name", "number_of_members", "user_role"]

    def get_number_of_members(self, team: Team) -> int:
        """Count the team's members (annotated by the view)."""
        return team.member_count

    def get_user_role(self, team: Team) -> str:
        """The caller's role in the team (annotated by the view)."""
        return team.caller_role


class TeamDetailSerializer(TeamSerializer):
    """A team with its members' ids and roles."""

    members = serializers.SerializerMethodField()
    monthly_spend = serializers.SerializerMethodField()

    class Meta(TeamSerializer.Meta):
        fields = [*TeamSerializer.Meta.fields, "members", "monthly_spend"]

    def get_monthly_spend(self, team: Team) -> str | None:
        """What the team has been charged this month; shown to its admins and owners only."""
        from epic.billing.ledger import month_spend
        from epic.billing.pricing import money_text
        from epic.billing.services import in_currency, reader_currency

        if team.caller_role not in ("admin", "owner"):
            return None
        currency = reader_currency(self.context)
        return money_text(in_currency(month_spend(team=team), currency), currency)

    def get_members(self, team: Team) -> str:
        """Members as `user_id:role` pairs separated by commas."""
        rows = Membership.objects.filter(team=team).order_by("user_id")
        return ",".join(f"{row.user_id}:{row.role}" for row in rows)


class ProfileSettingsSerializer(serializers.ModelSerializer):
    """The caller's profile settings."""

    display_currency_symbol = serializers.CharField(read_only=True)

    class Meta:
        model = Profile
        fields = ["id", "display_currency", "display_currency_symbol"]
        read_only_fields = ["id"]
