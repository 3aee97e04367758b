"""The `epic` command: serve the product, run a worker, and administer its state."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path


def _setup_django() -> None:
    """Configure Django and bring the database and default catalog up to date."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "epic.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)

    from epic.catalog.defaults import ensure_default_catalog

    ensure_default_catalog()


def _serve(args) -> int:
    """Run the API, the S3 endpoint and the worker."""
    from epic.compute.isolation import UnreachableHomeError
    from epic.server import serve
    from epic.worker.leases import DuplicateWorkerError

    try:
        serve(args.host, args.port, args.s3_port if args.s3_port is not None else _next(args.port))
    except (DuplicateWorkerError, UnreachableHomeError) as error:
        print(f"epic serve: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"epic serve: cannot listen on {args.host}: {error}", file=sys.stderr)
        return 1
    return 0


def _next(port: int) -> int:
    """The S3 port beside the API port (0 stays 0: any free port)."""
    return port + 1 if port else 0


def _worker(args) -> int:
    """Run only the worker, for deployments that keep it apart from the API."""
    from epic.server import database_label, wait_for_signal
    from epic.worker.leases import DuplicateWorkerError
    from epic.worker.loop import Worker

    problem = _worker_setup_problem()
    if problem:
        print(f"epic worker: {problem}", file=sys.stderr)
        return 1
    worker = Worker(name=args.name)
    try:
        worker.register()
    except DuplicateWorkerError as error:
        print(f"epic worker: {error}", file=sys.stderr)
        return 1
    print(f"EPIC worker {worker.name!r} on {database_label()}", flush=True)

    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="epic-worker")
    thread.start()
    wait_for_signal(stop)
    thread.join()
    return 0


def _worker_setup_problem() -> str | None:
    """Why a worker apart from the API server could not do its work, or None."""
    from django.conf import settings

    from epic.catalog.models import Backend, Cluster

    if Cluster.objects.filter(backend=Backend.SLURM).exists() and not settings.EPIC_API_URL:
        return (
            "EPIC_API_URL is not set: Slurm compute nodes reach the API server there "
            "(e.g. EPIC_API_URL=http://api-host:8000)."
        )
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        print(
            "epic worker: warning: the database is SQLite; run one worker only, or set "
            "EPIC_DATABASE_URL to the PostgreSQL database the API server uses.",
            file=sys.stderr,
        )
    return None


def _user_create(args) -> int:
    """Create a user, and their team if it is new."""
    from django.db import IntegrityError

    from epic.accounts.services import create_user

    try:
        user = create_user(args.name, args.team, role=args.role, email=args.email or "")
    except IntegrityError:
        print(f"epic: a user named {args.name} exists already", file=sys.stderr)
        return 1
    print(f"Created user {user.username} (id {user.pk}) in team {args.team} as {args.role}")
    return 0


def _user_join(args) -> int:
    """Make an existing user a member of another team, or change their role in one."""
    from django.contrib.auth import get_user_model

    from epic.accounts.services import join_team

    try:
        membership = join_team(args.name, args.team, role=args.role)
    except get_user_model().DoesNotExist:
        print(f"epic: no user named {args.name}", file=sys.stderr)
        return 1
    team = membership.team
    print(f"{args.name} is a member of team {team.name} (id {team.pk}) as {membership.role}")
    return 0


def _token_create(args) -> int:
    """Print a new API token for a user, and nothing else."""
    from django.contrib.auth import get_user_model

    from epic.accounts.services import issue_token

    try:
        print(issue_token(args.name))
    except get_user_model().DoesNotExist:
        print(f"epic: no user named {args.name}", file=sys.stderr)
        return 1
    return 0


def _project_create(args) -> int:
    """Create a project (billing code) in a team."""
    from django.db import IntegrityError

    from epic.accounts.models import Team
    from epic.projects.services import create_project

    try:
        project = create_project(args.project_id, args.team, args.description or "")
    except Team.DoesNotExist:
        print(f"epic: no team named {args.team}", file=sys.stderr)
        return 1
    except IntegrityError:
        print(f"epic: team {args.team} has a project {args.project_id} already", file=sys.stderr)
        return 1
    print(f"Created project {project.project_id} (id {project.pk}) in team {args.team}")
    return 0


def _billing_team(args) -> int:
    """Set a team's discount, monthly limit and job authorisation rule."""
    from epic.accounts.models import Team
    from epic.billing.models import TeamBilling

    team = Team.objects.filter(name=args.team).first()
    if team is None:
        print(f"epic: no team named {args.team}", file=sys.stderr)
        return 1
    billing = TeamBilling.of(team)
    for option, field in BILLING_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            setattr(billing, field, None if value == NO_LIMIT else value)
    billing.save()
    print(_billing_text(billing))
    return 0


def _billing_text(billing) -> str:
    """A team's billing settings in one line."""
    max_limit = billing.profile.max_limit if billing.profile else None
    return (
        f"{billing.team.name}: discount {billing.discount_rate.normalize()}, monthly limit "
        f"{_shown(billing.monthly_limit)}, jobauth {'on' if billing.jobauth_enabled else 'off'} "
        f"(all jobs: {billing.jobauth_all_jobs}, threshold "
        f"{_shown(billing.jobauth_cost_threshold)}), profile max limit {_shown(max_limit)}"
    )


def _shown(amount: Decimal | None) -> str:
    """An amount to the penny, or "none"."""
    return "none" if amount is None else f"{Decimal(amount):.2f}"


def _billing_max_limit(args) -> int:
    """Set the maximum of the monthly limits of a team's billing profile."""
    from epic.accounts.models import Team
    from epic.billing.models import TeamBilling

    team = Team.objects.filter(name=args.team).first()
    if team is None:
        print(f"epic: no team named {args.team}", file=sys.stderr)
        return 1
    billing = TeamBilling.of(team)
    billing.profile.max_limit = args.amount
    billing.profile.save()
    print(_billing_text(billing))
    return 0


def _amount(text: str) -> Decimal:
    """A non-negative decimal amount from the command line."""
    try:
        value = Decimal(text)
    except InvalidOperation as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from error
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError("an amount is zero or more")
    return value


def _limit(text: str) -> Decimal | str:
    """A monthly limit from the command line, or NO_LIMIT for "none"."""
    return NO_LIMIT if text == NO_LIMIT else _amount(text)


def _yes_no(text: str) -> bool:
    """A yes/no switch from the command line."""
    if text not in ("yes", "no", "on", "off"):
        raise argparse.ArgumentTypeError("say yes or no")
    return text in ("yes", "on")


# What `--monthly-limit` takes to remove a team's limit.
NO_LIMIT = "none"
BILLING_OPTIONS = {
    "discount": "discount_rate",
    "monthly_limit": "monthly_limit",
    "jobauth": "jobauth_enabled",
    "jobauth_all_jobs": "jobauth_all_jobs",
    "jobauth_threshold": "jobauth_cost_threshold",
}


def _catalog_load(args) -> int:
    """Load clusters, queues and applications from a YAML file."""
    from epic.catalog.loader import CatalogError, load_catalog_file

    try:
        counts = load_catalog_file(Path(args.file))
    except (CatalogError, OSError) as error:
        print(f"epic: {error}", file=sys.stderr)
        return 1
    print(", ".join(f"{count} {kind}" for kind, count in counts.items()))
    return 0


def _cluster_show(args) -> int:
    """Print what the worker sees of each cluster; exit 1 if a Slurm cluster does not answer."""
    from epic.catalog.models import Backend, Cluster
    from epic.compute.slurm.overview import describe, look_at_cluster

    healthy = True
    for cluster in Cluster.objects.prefetch_related("queues").order_by("name"):
        print(f"Cluster {cluster.name} ({cluster.get_backend_display()})")
        queues = {queue.queue_code: queue.partition for queue in cluster.queues.all()}
        if cluster.backend == Backend.SLURM:
            view = look_at_cluster()
            healthy = healthy and view.healthy
            print("\n".join(describe(view, queues)))
        else:
            print("\n".join(_describe_local(queues)))
    return 0 if healthy else 1


def _cluster_accounts(args) -> int:
    """List each team's Slurm account and whether it exists; create missing ones if asked.

    Exits 1 while an account is missing.
    """
    from epic.accounts.models import Team
    from epic.compute.slurm import accounts

    missing = 0
    for team in Team.objects.order_by("pk"):
        name = accounts.account_name(team.pk)
        if name is None:
            print("Jobs are not isolated (EPIC_ISOLATE_JOBS=0): Slurm jobs run as this user.")
            return 0
        state = "present" if accounts.exists(name) else "missing"
        if state == "missing" and args.create:
            try:
                accounts.create(name)
            except OSError as error:
                print(f"epic: {error}", file=sys.stderr)
                return 1
            state = "created"
        missing += state == "missing"
        print(f"{name}\t{state}\tteam {team.name} (id {team.pk})")
    if missing:
        print(f"epic: {missing} missing; --create makes them on this machine", file=sys.stderr)
    return 1 if missing else 0


def _describe_local(queues: dict[str, str]) -> list[str]:
    """Lines describing this machine as a cluster."""
    from epic.catalog.defaults import machine_cores, machine_memory

    return [
        f"  health: up (this machine: {machine_cores()} cores, {machine_memory()})",
        f"  queues: {', '.join(sorted(queues))}",
    ]


def build_parser() -> argparse.ArgumentParser:
    """The command line's grammar."""
    parser = argparse.ArgumentParser(prog="epic", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API, the S3 endpoint and the worker")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--s3-port", type=int, default=None, help="default: the API port + 1")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="run a worker without the API")
    worker.add_argument(
        "--name",
        default=None,
        help="unique among the workers sharing the database (default: EPIC_WORKER_NAME, "
        "else the host name)",
    )
    worker.set_defaults(handler=_worker)

    admin = commands.add_parser("admin", help="administer users, tokens and the catalog")
    areas = admin.add_subparsers(dest="area", required=True)
    _add_admin_commands(areas)
    return parser


def _add_admin_commands(areas) -> None:
    """The `epic admin` sub-commands."""
    user = areas.add_parser("user").add_subparsers(dest="action", required=True)
    create = user.add_parser("create", help="create a user (and the team if new)")
    create.add_argument("name")
    create.add_argument("--team", required=True)
    create.add_argument("--role", choices=["owner", "admin", "user"], default="user")
    create.add_argument("--email")
    create.set_defaults(handler=_user_create)
    join = user.add_parser("join", help="add a user to a team, or change their role in it")
    join.add_argument("name")
    join.add_argument("--team", required=True)
    join.add_argument(
        "--role", choices=["owner", "admin", "user"], help="default: user, or the role they have"
    )
    join.set_defaults(handler=_user_join)

    token = areas.add_parser("token").add_subparsers(dest="action", required=True)
    token_create = token.add_parser("create", help="print a new API token for a user")
    token_create.add_argument("name")
    token_create.set_defaults(handler=_token_create)

    project = areas.add_parser("project").add_subparsers(dest="action", required=True)
    project_create = project.add_parser("create", help="create a project in a team")
    project_create.add_argument("project_id")
    project_create.add_argument("--team", required=True)
    project_create.add_argument("--description")
    project_create.set_defaults(handler=_project_create)

    billing = areas.add_parser("billing").add_subparsers(dest="action", required=True)
    team = billing.add_parser("team", help="a team's discount, budget and job authorisation")
    team.add_argument("team")
    team.add_argument("--discount", type=_amount, help="a fraction, e.g. 0.1 for 10%%")
    team.add_argument(
        "--monthly-limit", type=_limit, help='in the base currency; "none" removes the limit'
    )
    team.add_argument("--jobauth", type=_yes_no, help="yes or no")
    team.add_argument("--jobauth-all-jobs", type=_yes_no, help="yes or no")
    team.add_argument("--jobauth-threshold", type=_amount, help="in the base currency")
    team.set_defaults(handler=_billing_team)
    max_limit = billing.add_parser("max-limit", help="cap the limits of a team's profile")
    max_limit.add_argument("team")
    max_limit.add_argument("amount", type=_amount)
    max_limit.set_defaults(handler=_billing_max_limit)

    catalog = areas.add_parser("catalog").add_subparsers(dest="action", required=True)
    load = catalog.add_parser("load", help="load queues and applications from a YAML file")
    load.add_argument("file")
    load.set_defaults(handler=_catalog_load)

    cluster = areas.add_parser("cluster").add_subparsers(dest="action", required=True)
    show = cluster.add_parser(
        "show", help="print each cluster's health, nodes, partitions and queues"
    )
    show.set_defaults(handler=_cluster_show)
    team_accounts = cluster.add_parser(
        "accounts", help="list the Unix account each team's Slurm jobs run under"
    )
    team_accounts.add_argument(
        "--create", action="store_true", help="create the missing ones on this machine"
    )
    team_accounts.set_defaults(handler=_cluster_accounts)


def main(argv: list[str] | None = None) -> int:
    """Run the `epic` command."""
    args = build_parser().parse_args(argv)
    # State under EPIC_HOME (database, data, secrets) is for the server's user alone.
    os.umask(0o077)
    _setup_django()
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
