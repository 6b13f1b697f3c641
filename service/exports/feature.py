"""Model exports (an ftserve extension): a project's fine-tuned model merged into its base model in the
background (`ftserve export`'s merge, in its own process), the result a downloadable file."""

from service.components import Components, Feature
from service.exports.router import router
from service.exports.runner import ExportRunner
from service.exports.service import ExportService
from service.exports.store import ExportStore
from service.files.service import FileService
from service.projects.service import Access


def build(c: Components) -> None:
    runner = ExportRunner(c.get(ExportStore), c.adapters, c.get(FileService), c.settings, c.model_path)
    c.add(runner, ExportService(c.get(ExportStore), c.get(Access), c.settings.base_model_name, runner.wake))
    c.on_start(runner.start)
    c.on_stop(runner.close)


feature = Feature("exports", routers=[router], stores=lambda db: [ExportStore(db)], build=build)
