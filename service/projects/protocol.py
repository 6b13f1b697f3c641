"""Wire objects of the projects admin API and of checkpoint permissions, as OpenAI's admin API has them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.protocol import Strict


class Project(BaseModel):
    id: str
    object: Literal["organization.project"] = "organization.project"
    name: str
    created_at: int
    archived_at: int | None = None
    status: Literal["active", "archived"] = "active"


class CreateProjectRequest(Strict):
    name: str = Field(min_length=1, max_length=256)
    """The friendly name of the project."""


class UpdateProjectRequest(Strict):
    name: str = Field(min_length=1, max_length=256)
    """The new name of the project."""


class ServiceAccount(BaseModel):
    object: Literal["organization.project.service_account"] = "organization.project.service_account"
    id: str
    name: str
    role: Literal["owner", "member", "none"] = "member"
    created_at: int


class ServiceAccountApiKey(BaseModel):
    object: Literal["organization.project.service_account.api_key"] = "organization.project.service_account.api_key"
    value: str
    name: str
    created_at: int
    id: str


class ServiceAccountCreated(BaseModel):
    """The one answer that carries a key's value: it is not stored, and not shown again."""

    object: Literal["organization.project.service_account"] = "organization.project.service_account"
    id: str
    name: str
    role: Literal["member", "none"] = "member"
    created_at: int
    api_key: ServiceAccountApiKey | None


class CreateServiceAccountRequest(Strict):
    name: str = Field(min_length=1, max_length=256)
    """The name of the service account."""
    create_service_account_only: bool | None = None
    """Create the account without an API key (role `none`)."""


class ServiceAccountDeleted(BaseModel):
    object: Literal["organization.project.service_account.deleted"] = "organization.project.service_account.deleted"
    id: str
    deleted: bool = True


class CheckpointPermission(BaseModel):
    id: str
    created_at: int
    project_id: str
    object: Literal["checkpoint.permission"] = "checkpoint.permission"


class CreateCheckpointPermissionRequest(Strict):
    project_ids: list[str] = Field(min_length=1, max_length=100)
    """The projects to share the fine-tuned model or checkpoint with."""


class CheckpointPermissionDeleted(BaseModel):
    id: str
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
    deleted: bool = True
