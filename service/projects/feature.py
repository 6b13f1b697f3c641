"""Projects and their keys: the admin API, service accounts, checkpoint permissions, and `Access` (which
models a project may see, serve and delete)."""

from service.components import Components, Feature
from service.projects.admin_keys import AdminKeys
from service.projects.keys import Keyring, load_secret
from service.projects.router import permissions, router
from service.projects.service import Access, ModelOwners, ProjectService
from service.projects.store import ProjectStore


def build(c: Components) -> None:
    s = c.settings
    store = c.get(ProjectStore)
    keyring = Keyring(store, load_secret(s.load_key_secret(), s.key_secret_path), s.load_api_keys(),
                      AdminKeys(s.admin_key, s.admin_key_file))
    owners = c.one(ModelOwners)  # the job store: a fine-tuned model is its job's project's
    c.add(keyring, Access(store, owners, c.adapters), ProjectService(store, keyring, c.adapters))


feature = Feature("projects", routers=[permissions, router], stores=lambda db: [ProjectStore(db)], build=build)
