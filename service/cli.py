"""The `ftserve` command line: tiny-model, eval, train, export, serve, migrate, openapi."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _tiny_model(args: argparse.Namespace) -> int:
    from trainer.tiny_model import build_tiny_model, cached_tiny_model

    if args.family is not None:
        from trainer.families import build_family_model

        out = build_family_model(args.dir, args.family, cached_tiny_model(progress=not args.quiet), seed=args.seed)
        print(f"random {args.family} model written to {out}")
        return 0
    steps = {} if args.pretrain_steps is None else {"steps": args.pretrain_steps}
    out = build_tiny_model(args.dir, seed=args.seed, progress=not args.quiet, **steps)
    print(f"tiny model written to {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trainer.config import ConfigError, TrainConfig
    from trainer.data import DataError

    try:
        cfg = TrainConfig.from_file(args.config)
    except ConfigError as e:
        print(f"error: {args.config}: {e}", file=sys.stderr)
        return 2
    from trainer.recipe import train

    bar = tqdm(unit="step", dynamic_ncols=True, disable=args.quiet)

    def show(event: dict) -> None:
        kind = event["type"]
        if kind == "info":
            bar.write(event["message"])
            if "total_steps" in event:
                bar.reset(total=event["total_steps"])
        elif kind == "metrics":
            bar.n = event["step"]
            if "train_reward_mean" in event:  # stage grpo
                bar.set_postfix(reward=f"{event['train_reward_mean']:.3f}", samples_s=f"{event['samples_per_s']:.1f}")
            else:
                bar.set_postfix(loss=f"{event['train_loss']:.4f}", tok_s=f"{event['tokens_per_s']:.0f}")
            if "valid_reward_mean" in event:
                bar.write(f"step {event['step']}: valid_reward_mean {event['valid_reward_mean']:.3f}")
            if "valid_loss" in event:
                bar.write(f"step {event['step']}: valid_loss {event['valid_loss']:.4f}, "
                          f"valid_mean_token_accuracy {event['valid_mean_token_accuracy']:.3f}")
        elif kind == "checkpoint":
            bar.write(f"step {event['step']}: checkpoint {event['path']}")

    try:
        result = train(cfg, show)
    except DataError as e:
        bar.close()
        print(f"error: {e.path}:", file=sys.stderr)
        for err in e.errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    except ValueError as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    bar.close()
    print(f"adapter written to {result.adapter_path} ({result.steps} steps, {result.trained_tokens} tokens)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from service.app import create_app
    from service.middleware import RequestIdFilter
    from service.settings import Settings

    from service import watchdog

    watchdog.start()  # kills the engine's processes should this one be killed outright
    given = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    settings = Settings(**given)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    for handler in logging.root.handlers:  # every record, uvicorn's access log too, names its request
        handler.addFilter(RequestIdFilter())
    # SIGTERM/SIGINT: uvicorn stops accepting, lets in-flight requests (streams too) finish for up to
    # shutdown_timeout_seconds, then the app's shutdown checkpoints and stops trainers and the engine.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                log_config=None, timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds) or None)
    return 0


def _export(args: argparse.Namespace) -> int:
    from trainer.export import ExportConfig, export

    try:
        cfg = ExportConfig.from_file(args.config)
    except ValueError as e:
        print(f"error: {args.config}: {e}", file=sys.stderr)
        return 2
    adapter = Path(cfg.adapter_name_or_path)
    if not adapter.is_dir():  # a served model's name: its adapter from the server's store
        from adapters import AdapterError, AdapterStore
        from service.settings import Settings

        settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
        try:
            adapter = AdapterStore(settings.adapters_dir).local_copy(cfg.adapter_name_or_path)
        except AdapterError as e:
            print(f"error: adapter_name_or_path: {e}", file=sys.stderr)
            return 2
    try:
        out = export(cfg, adapter)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"merged model written to {out}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from service.app import open_database
    from service.settings import Settings

    settings = Settings(**{k: v for k, v in vars(args).items() if k in ("data_dir", "database_url") and v is not None})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings)  # upgrades the schema to the newest version; a second run finds nothing to do
    with db.engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    db.close()
    print(f"database schema at version {version}: {db.url.render_as_string(hide_password=True)}")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from service.app import openapi_yaml

    text = openapi_yaml()
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (the docs' CLI reference is generated from it)."""
    parser = argparse.ArgumentParser(prog="ftserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tiny-model", help="build the tiny pretrained test model into DIR (offline, ~2.5 min)")
    p.add_argument("dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrain-steps", type=int, default=None,
                   help="pretraining steps (default: the full 420; fewer for a quick, weaker model)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from trainer.families import FAMILIES

    p.add_argument("--family", choices=sorted(FAMILIES), default=None,
                   help="instead: a small random model of this family's architecture and chat template, on the "
                        "tiny model's tokenizer (Guides > Base models)")
    p.set_defaults(func=_tiny_model)

    from service.evals.cli import add_parser as add_eval_parser

    add_eval_parser(sub)

    from service.models.cli import add_parser as add_download_parser

    add_download_parser(sub)

    from trainer.config import TrainConfig

    p = sub.add_parser(
        "train",
        help="run the LoRA recipe from a YAML config",
        description="Run the LoRA recipe from a YAML config (LLaMA-Factory key names). Keys:\n"
        + TrainConfig.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", type=Path)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    from service.settings import Settings

    p = sub.add_parser("serve", help="run the API server",
                       description="Run the API server. Every option can also be set as FTSERVE_<NAME>.")
    for name, field in Settings.model_fields.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, help=field.description)
    p.set_defaults(func=_serve)

    from trainer.export import __doc__ as export_doc

    p = sub.add_parser("export", help="merge an adapter into its base model (as llamafactory-cli export)",
                       description=export_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path)
    p.add_argument("--data-dir", type=Path, default=None,
                   help="the server's data dir, where a served model's name (ft:...) is looked up")
    p.set_defaults(func=_export)

    p = sub.add_parser("migrate", help="upgrade the database schema to this version's (serve does it at start too)",
                       description="Upgrade the database schema to this version's. `ftserve serve` does the same at "
                       "start; run this first to upgrade a shared database once, before replicas roll.")
    for name in ("data_dir", "database_url"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                       help=Settings.model_fields[name].description)
    p.set_defaults(func=_migrate)

    p = sub.add_parser("openapi", help="print the API's OpenAPI schema as YAML (the committed openapi.yaml)")
    p.add_argument("-o", "--output", type=Path)
    p.set_defaults(func=_openapi)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
