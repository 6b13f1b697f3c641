"""The Files API: uploads, stored in the object store, fine-tune files validated by the trainer's loader."""

from service.components import Components, Feature
from service.files.router import router
from service.files.service import FileService
from service.files.store import FileStore, FileUser


def build(c: Components) -> None:
    # every feature's stores exist before any service: those whose work reads files say so (FileUser)
    c.add(FileService(c.get(FileStore), c.objects, c.settings.max_upload_bytes, c.implementing(FileUser)))


feature = Feature("files", routers=[router], stores=lambda db: [FileStore(db)], build=build)
