from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from service.components import provide
from service.deps import Admin
from service.projects.protocol import (
    CheckpointPermission, CheckpointPermissionDeleted, CreateCheckpointPermissionRequest, CreateProjectRequest,
    CreateServiceAccountRequest, Project, ServiceAccount, ServiceAccountCreated, ServiceAccountDeleted,
    UpdateProjectRequest,
)
from service.projects.service import ProjectService
from service.protocol import ListObject

router = APIRouter(prefix="/v1/organization/projects", tags=["projects"])
permissions = APIRouter(prefix="/v1/fine_tuning/checkpoints", tags=["fine-tuning"])
Limit = Annotated[int, Query(ge=1, le=100)]
Projects = Annotated[ProjectService, Depends(provide(ProjectService))]


@router.post("", response_model=Project)
def create_project(projects: Projects, _: Admin, body: CreateProjectRequest) -> Project:
    return projects.create(body)


@router.get("", response_model=ListObject[Project])
def list_projects(projects: Projects, _: Admin, after: str | None = None, limit: Limit = 20,
                  include_archived: bool = False) -> ListObject[Project]:
    return projects.list(after, limit, include_archived)


@router.get("/{project_id}", response_model=Project)
def retrieve_project(projects: Projects, _: Admin, project_id: str) -> Project:
    return projects.get(project_id)


@router.post("/{project_id}", response_model=Project)
def modify_project(projects: Projects, _: Admin, project_id: str, body: UpdateProjectRequest) -> Project:
    return projects.update(project_id, body)


@router.post("/{project_id}/archive", response_model=Project)
def archive_project(projects: Projects, _: Admin, project_id: str) -> Project:
    return projects.archive(project_id)


@router.post("/{project_id}/service_accounts", response_model=ServiceAccountCreated)
def create_service_account(projects: Projects, _: Admin, project_id: str,
                           body: CreateServiceAccountRequest) -> ServiceAccountCreated:
    return projects.create_account(project_id, body)


@router.get("/{project_id}/service_accounts", response_model=ListObject[ServiceAccount])
def list_service_accounts(projects: Projects, _: Admin, project_id: str, after: str | None = None,
                          limit: Limit = 20) -> ListObject[ServiceAccount]:
    return projects.list_accounts(project_id, after, limit)


@router.get("/{project_id}/service_accounts/{service_account_id}", response_model=ServiceAccount)
def retrieve_service_account(projects: Projects, _: Admin, project_id: str,
                             service_account_id: str) -> ServiceAccount:
    return projects.get_account(project_id, service_account_id)


@router.delete("/{project_id}/service_accounts/{service_account_id}", response_model=ServiceAccountDeleted)
def delete_service_account(projects: Projects, _: Admin, project_id: str,
                           service_account_id: str) -> ServiceAccountDeleted:
    return projects.delete_account(project_id, service_account_id)


@permissions.post("/{fine_tuned_model_checkpoint:path}/permissions", response_model=ListObject[CheckpointPermission])
def create_checkpoint_permission(projects: Projects, _: Admin, fine_tuned_model_checkpoint: str,
                                 body: CreateCheckpointPermissionRequest) -> ListObject[CheckpointPermission]:
    return projects.share(fine_tuned_model_checkpoint, body)


@permissions.get("/{fine_tuned_model_checkpoint:path}/permissions", response_model=ListObject[CheckpointPermission])
def list_checkpoint_permissions(projects: Projects, _: Admin, fine_tuned_model_checkpoint: str,
                                project_id: str | None = None, after: str | None = None, limit: Limit = 10,
                                order: Literal["ascending", "descending"] = "descending",
                                ) -> ListObject[CheckpointPermission]:
    return projects.permissions(fine_tuned_model_checkpoint, project_id, after, limit,
                                "asc" if order == "ascending" else "desc")


@permissions.delete("/{fine_tuned_model_checkpoint:path}/permissions/{permission_id}",
                    response_model=CheckpointPermissionDeleted)
def delete_checkpoint_permission(projects: Projects, _: Admin, fine_tuned_model_checkpoint: str,
                                 permission_id: str) -> CheckpointPermissionDeleted:
    return projects.unshare(fine_tuned_model_checkpoint, permission_id)
