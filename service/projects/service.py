"""Projects, service accounts and checkpoint permissions (the admin API), and `Access`: which models a
project may see, serve and delete.

A fine-tuned model (and each of its checkpoints) belongs to the project of the job that made it; an
imported adapter (`POST /v1/models`) to the project that imported it; adapters published by hand,
without either, to the default project. The owner may share one with other projects (a checkpoint
permission): they may list and serve it, never delete it.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from adapters import AdapterError, AdapterMeta
from service.errors import APIError, Kind, model_not_found
from service.ids import new_id
from service.projects.keys import DEFAULT_PROJECT, Keyring
from service.projects.store import ProjectStore
from service.projects.protocol import (
    CheckpointPermission, CheckpointPermissionDeleted, CreateCheckpointPermissionRequest, CreateProjectRequest,
    CreateServiceAccountRequest, Project, ServiceAccount, ServiceAccountApiKey, ServiceAccountCreated,
    ServiceAccountDeleted, UpdateProjectRequest,
)
from service.protocol import ListObject


@runtime_checkable
class ModelOwners(Protocol):
    """Who made each fine-tuned model: the fine-tuning feature's job store answers it."""

    def job_projects(self, job_ids: list[str]) -> dict[str, str]: ...


class Access:
    def __init__(self, store: ProjectStore, owners: ModelOwners, adapters):
        self.store, self.owners, self.adapters = store, owners, adapters

    def owner(self, meta: AdapterMeta) -> str:
        if meta.job_id is None:
            return meta.project or DEFAULT_PROJECT
        return self.owners.job_projects([meta.job_id]).get(meta.job_id, DEFAULT_PROJECT)

    def visible(self, metas: list[AdapterMeta], project: str) -> list[AdapterMeta]:
        """The adapters `project` owns or has been given, in the given order."""
        owners = self.owners.job_projects(sorted({m.job_id for m in metas if m.job_id}))
        shared = self.store.shared_with(project)
        return [m for m in metas if owners.get(m.job_id, m.project or DEFAULT_PROJECT) == project
                or m.name in shared]

    def can_use(self, meta: AdapterMeta, project: str) -> bool:
        return self.owner(meta) == project or self.store.is_shared(meta.name, project)

    def usable(self, model: str, project: str) -> AdapterMeta:
        """The metadata of a model `project` may use; 404 as for a missing one if it may not."""
        try:
            meta = self.adapters.metadata(model)
        except (AdapterError, OSError, ValueError, TypeError):
            raise model_not_found(model) from None
        if not self.can_use(meta, project):
            raise model_not_found(model)
        return meta

    def owned(self, model: str, project: str) -> AdapterMeta:
        """The metadata of a model `project` owns: 404 if it may not see it, 403 if it was only shared with it."""
        meta = self.usable(model, project)
        if self.owner(meta) != project:
            raise APIError(Kind.PERMISSION, f"The model '{model}' is shared with your project by another "
                           "project; only its owner can change or delete it.", param="model",
                           code="model_not_owned")
        return meta


class ProjectService:
    def __init__(self, store: ProjectStore, keyring: Keyring, adapters):
        self.store, self.keyring, self.adapters = store, keyring, adapters

    # ---------------------------------------------------------------- projects
    def create(self, req: CreateProjectRequest) -> Project:
        project = Project(id=new_id("proj_"), name=req.name, created_at=int(time.time()))
        self.store.insert_project(project.model_dump())
        return project

    def get(self, project_id: str) -> Project:
        doc = self.store.get_project(project_id)
        if doc is None:
            raise APIError(Kind.NOT_FOUND, f"No project found with id '{project_id}'.", param="project_id",
                           code="project_not_found")
        return Project(**doc)

    def list(self, after: str | None, limit: int, include_archived: bool) -> ListObject[Project]:
        docs, more = self.store.list_projects(after, limit, include_archived)
        return ListObject[Project].page([Project(**d) for d in docs], more)

    def update(self, project_id: str, req: UpdateProjectRequest) -> Project:
        project = self._active(project_id)
        project.name = req.name
        self.store.update_project(project.model_dump())
        return project

    def archive(self, project_id: str) -> Project:
        """An archived project's keys stop working at once; its files, jobs and models stay stored."""
        project = self.get(project_id)
        if project_id == DEFAULT_PROJECT:
            raise APIError(Kind.INVALID_REQUEST, "The default project holds the keys of FTSERVE_API_KEYS and "
                           "cannot be archived.", param="project_id", code="project_not_archivable")
        if project.status != "archived":
            project.status, project.archived_at = "archived", int(time.time())
            self.store.update_project(project.model_dump())
        return project

    def _active(self, project_id: str) -> Project:
        project = self.get(project_id)
        if project.status != "active":
            raise APIError(Kind.INVALID_REQUEST, f"Project {project_id} is archived.", param="project_id",
                           code="project_archived")
        return project

    # ---------------------------------------------------------------- service accounts
    def create_account(self, project_id: str, req: CreateServiceAccountRequest) -> ServiceAccountCreated:
        self._active(project_id)
        now = int(time.time())
        account = ServiceAccount(id=new_id("svc_acct_"), name=req.name, created_at=now,
                                 role="none" if req.create_service_account_only else "member")
        key = None
        if not req.create_service_account_only:
            value, key_id, digest = self.keyring.new_key()
            key = ServiceAccountApiKey(value=value, name="Secret Key", created_at=now, id=key_id)
            self.store.insert_service_account(project_id, account.model_dump(), key_id, digest)
        else:
            self.store.insert_service_account(project_id, account.model_dump(), None, None)
        return ServiceAccountCreated(**account.model_dump(exclude={"role"}), role=account.role, api_key=key)

    def get_account(self, project_id: str, account_id: str) -> ServiceAccount:
        self.get(project_id)
        doc = self.store.get_service_account(project_id, account_id)
        if doc is None:
            raise APIError(Kind.NOT_FOUND, f"No service account found with id '{account_id}' in project "
                           f"{project_id}.", param="service_account_id", code="service_account_not_found")
        return ServiceAccount(**doc)

    def list_accounts(self, project_id: str, after: str | None, limit: int) -> ListObject[ServiceAccount]:
        self.get(project_id)
        docs, more = self.store.list_service_accounts(project_id, after, limit)
        return ListObject[ServiceAccount].page([ServiceAccount(**d) for d in docs], more)

    def delete_account(self, project_id: str, account_id: str) -> ServiceAccountDeleted:
        """Its key is refused from the next request on, by every server sharing the database."""
        self.get_account(project_id, account_id)
        self.store.delete_service_account(project_id, account_id)
        return ServiceAccountDeleted(id=account_id)

    # ---------------------------------------------------------------- checkpoint permissions
    def _model(self, model: str) -> None:
        try:
            self.adapters.metadata(model)
        except (AdapterError, OSError, ValueError, TypeError):
            raise APIError(Kind.NOT_FOUND, f"No fine-tuned model or checkpoint named '{model}'.",
                           param="fine_tuned_model_checkpoint", code="model_not_found") from None

    def share(self, model: str, req: CreateCheckpointPermissionRequest) -> ListObject[CheckpointPermission]:
        self._model(model)
        for n, project_id in enumerate(req.project_ids):
            doc = self.store.get_project(project_id)
            if doc is None or doc["status"] != "active":
                raise APIError(Kind.INVALID_REQUEST, f"No active project with id '{project_id}'.",
                               param=f"project_ids[{n}]", code="project_not_found")
        now = int(time.time())
        granted = [self.store.insert_permission(model, CheckpointPermission(
            id=new_id("cp_"), created_at=now, project_id=p).model_dump())
            for p in dict.fromkeys(req.project_ids)]
        return ListObject[CheckpointPermission].page([CheckpointPermission(**d) for d in granted], False)

    def permissions(self, model: str, project_id: str | None, after: str | None, limit: int,
                    order: str) -> ListObject[CheckpointPermission]:
        self._model(model)
        docs, more = self.store.list_permissions(model, project_id, after, limit, order)
        return ListObject[CheckpointPermission].page([CheckpointPermission(**d) for d in docs], more)

    def unshare(self, model: str, permission_id: str) -> CheckpointPermissionDeleted:
        if not self.store.delete_permission(model, permission_id):
            raise APIError(Kind.NOT_FOUND, f"No permission '{permission_id}' on '{model}'.", param="permission_id",
                           code="permission_not_found")
        return CheckpointPermissionDeleted(id=permission_id)
