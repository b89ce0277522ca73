"""compose.yaml describes the distributed deployment (no Docker here: checked structurally)."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.main import get_command

from infra.settings import Settings
from ticketblitz.cli import app

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = {"write-api", "read-api", "projections", "workers"}
INFRA_SERVICES = {"postgres", "kafka", "redis", "minio"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_names_every_service_with_a_health_check():
    services = compose()["services"]
    assert set(services) == APP_SERVICES | INFRA_SERVICES
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert "pgvector" in services["postgres"]["image"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_app_services_are_configured_only_through_known_settings():
    known = {f"TICKETBLITZ_{name.upper()}" for name in Settings.model_fields}
    required = {
        "TICKETBLITZ_DATABASE_URL",
        "TICKETBLITZ_KAFKA_BOOTSTRAP",
        "TICKETBLITZ_REDIS_URL",
        "TICKETBLITZ_JWT_SECRET",
        "TICKETBLITZ_SMTP_HOST",
        "TICKETBLITZ_STRIPE_API_KEY",
    }
    for name in APP_SERVICES:
        service = compose()["services"][name]
        env = set(service["environment"])
        assert required <= env, name
        assert env <= known, env - known
        assert service["build"] == "."
        for dependency in service["depends_on"].values():
            assert dependency["condition"] == "service_healthy"


def test_app_services_run_real_cli_commands():
    """Each service's command line parses against the real CLI (commands, options, values)."""
    for name in APP_SERVICES:
        argv = compose()["services"][name]["command"]
        assert argv[0] == "ticketblitz"
        command = get_command(app)
        args = argv[1:]
        while hasattr(command, "commands"):  # a group: descend to the subcommand
            command = command.commands[args[0]]
            args = args[1:]
        command.make_context(name, list(args))  # raises on unknown options or bad values
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["ticketblitz", "serve"' in dockerfile
    for package in ("domain", "commands", "write_api", "infra", "http_shell", "ticketblitz"):
        assert f"COPY {package} ./{package}" in dockerfile


def test_the_apis_keep_posters_in_minio():
    services = compose()["services"]
    assert services["minio"]["image"].startswith("minio/minio")
    for name in ("write-api", "read-api"):
        env = services[name]["environment"]
        assert env["TICKETBLITZ_BLOB_STORE"] == "s3"
        assert env["TICKETBLITZ_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert services[name]["depends_on"]["minio"]["condition"] == "service_healthy"
        assert env["TICKETBLITZ_S3_BUCKET"] and env["TICKETBLITZ_S3_SECRET_ACCESS_KEY"]
