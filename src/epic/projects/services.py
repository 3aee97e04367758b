"""Project operations shared by the API and `epic admin`."""

import logging

from epic.accounts.models import Team
from epic.projects.models import Project

logger = logging.getLogger(__name__)


def create_project(project_id: str, team_name: str, description: str = "") -> Project:
    """Create a project (billing code) in a team."""
    team = Team.objects.get(name=team_name)
    project = Project.objects.create(team=team, project_id=project_id, description=description)
    logger.info("Created project %s in team %s", project_id, team_name)
    return project
