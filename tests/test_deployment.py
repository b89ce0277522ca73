"""compose.yaml describes the distributed deployment. There is no Docker engine here, so it is
checked statically: against the Compose Specification's JSON schema (vendored in
deploy/compose-spec/), the CLI, infra/settings.py, .env.example and the routes of both APIs;
and the parts that run without Docker (the proxy's start script, the Stripe emulator's start,
the base install without the embedded servers) are run for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import distribution, packages_distributions
from pathlib import Path
from uuid import uuid4

import jsonschema
import yaml
from fastapi import FastAPI
from packaging.requirements import Requirement
from typer.main import get_command

from infra.payments import WEBHOOK_EVENTS, StripeGateway
from infra.settings import Settings
from infra.ticket_signing import parse_private_key
from read_api.app import query_router
from tests.e2e.saga_support import wait_until
from ticketblitz import embedded
from ticketblitz.cli import app
from ticketblitz.stack.processes import free_port
from ticketblitz.web import LARGER_BODIES
from write_api.app import command_router

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = {"write-api", "read-api", "projections", "workers"}
INFRA_SERVICES = {"postgres", "kafka", "redis", "minio", "stripe", "mailpit", "jaeger", "proxy"}
MONITORING = {"prometheus", "grafana"}  # profile `monitoring`
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
PINNED_TAG = re.compile(r"\d+\.\d+\.\d+|^RELEASE\.\d{4}-\d{2}-\d{2}")
NON_SETTINGS_ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"}  # infra/tracing.py


def compose_text() -> str:
    return (ROOT / "compose.yaml").read_text()


def compose() -> dict:
    return yaml.safe_load(compose_text())


def env_example() -> tuple[dict[str, str], set[str]]:
    """The variables .env.example sets, and those it documents commented out (optional)."""
    values: dict[str, str] = {}
    documented: set[str] = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        if m := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            values[m[1]] = m[2]
        elif m := re.fullmatch(r"# ([A-Z][A-Z0-9_]*)=.*", line):
            documented.add(m[1])
    return values, documented


def interpolate(value: object, env: dict[str, str]) -> str:
    """Compose's interpolation of one value (no `$$` escapes in our file)."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        if name in env and (env[name] or op in (None, "-", "?")):
            return env[name]
        if op in (":-", "-"):
            return str(arg)
        raise AssertionError(f"{name} is required by compose.yaml but not set")

    return VARIABLE.sub(one, str(value))


def dist_name(requirement: str) -> str:
    """The normalized distribution name of `name[extras]==version` (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[=<>\[;\s]", requirement)[0]).lower()


def service_port(service: dict) -> int:
    """The port an application service answers on: `serve --port`, else its ops port."""
    argv = service["command"]
    if "--port" in argv:
        return int(argv[argv.index("--port") + 1])
    return int(service["environment"]["TICKETBLITZ_OPS_PORT"])


def test_compose_follows_the_compose_specification():
    schema = json.loads((ROOT / "deploy/compose-spec/compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose())
    ]
    assert errors == []
    # The schema itself catches a mistake (it is not a schema that accepts anything).
    broken = compose()
    broken["services"]["proxy"]["restart"] = ["always"]
    broken["services"]["workers"]["healthcheck"]["intervall"] = "10s"
    assert len(list(validator.iter_errors(broken))) == 2


def test_compose_names_every_service_with_a_real_health_check_and_a_restart_policy():
    services = compose()["services"]
    assert set(services) == APP_SERVICES | INFRA_SERVICES | MONITORING
    assert {n for n, s in services.items() if "profiles" in s} == MONITORING
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        test = " ".join(service["healthcheck"]["test"])
        # A process that looks at itself proves nothing: no /proc, no own heartbeat file.
        for self_check in ("/proc", "cmdline", "getmtime", "heartbeat"):
            assert self_check not in test, name
    assert "pgvector" in services["postgres"]["image"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in APP_SERVICES:  # /readyz on the port the process answers on
        service = services[name]
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], name
        assert f"'http://127.0.0.1:{service_port(service)}/readyz'" in test[3], name
        for dependency in service["depends_on"].values():
            assert dependency["condition"] == "service_healthy"
    for name in ("projections", "workers"):  # their ops port (ticketblitz/ops_server.py)
        assert Settings.model_fields["ops_port"].default == 0  # off unless compose sets it
        assert int(services[name]["environment"]["TICKETBLITZ_OPS_PORT"]) > 0


def test_every_image_is_pinned():
    services = compose()["services"]
    images = [s["image"] for s in services.values() if "image" in s]
    for dockerfile in ("Dockerfile", "deploy/stripe-emulator/Dockerfile"):
        text = (ROOT / dockerfile).read_text()
        args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
        for image in re.findall(r"^FROM (\S+)", text, re.MULTILINE):
            images.append(args.get(image.strip("${}"), image))
    assert len(images) == 12
    for image in images:
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and PINNED_TAG.search(tag), image
    for name, service in services.items():
        assert "image" in service or "build" in service, name


def test_app_services_run_real_cli_commands():
    """Each service's command line parses against the real CLI (commands, options, values)."""
    services = compose()["services"]
    for name in APP_SERVICES:
        argv = services[name]["command"]
        assert argv[0] == "ticketblitz"
        command = get_command(app)
        args = argv[1:]
        while hasattr(command, "commands"):  # a group: descend to the subcommand
            command = command.commands[args[0]]
            args = args[1:]
        command.make_context(name, list(args))  # raises on unknown options or bad values
        assert services[name]["build"] == "."


def test_app_services_are_configured_only_through_known_settings(monkeypatch):
    """Every TICKETBLITZ_* variable is a Settings field, and the values compose gives them with
    .env.example's values are valid settings (tokens, ticket keys, URLs of the services)."""
    known = {f"TICKETBLITZ_{name.upper()}" for name in Settings.model_fields}
    required = {
        "TICKETBLITZ_DATABASE_URL",
        "TICKETBLITZ_KAFKA_BOOTSTRAP",
        "TICKETBLITZ_REDIS_URL",
        "TICKETBLITZ_JWT_SECRET",
        "TICKETBLITZ_SMTP_HOST",
        "TICKETBLITZ_STRIPE_API_BASE",
        "TICKETBLITZ_STRIPE_API_KEY",
        "TICKETBLITZ_STRIPE_WEBHOOK_SECRET",
        "TICKETBLITZ_TICKET_SIGNING_KEY",
        "TICKETBLITZ_TRUSTED_PROXIES",
    }
    values, _ = env_example()
    services = compose()["services"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert required <= set(env), name
        ours = {k for k in env if k.startswith("TICKETBLITZ_")}
        assert ours <= known, ours - known
        assert set(env) - ours <= NON_SETTINGS_ENV, name
        for key in list(os.environ):
            if key.startswith("TICKETBLITZ_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, interpolate(value, values))
        settings = Settings()
        assert settings.database_url and "@postgres:5432/" in settings.database_url
        assert settings.stripe_api_base == "http://stripe:8420"
        assert (settings.smtp_host, settings.smtp_port) == ("mailpit", 1025)
        assert settings.jwt_secret is not None and len(settings.jwt_secret.get_secret_value()) >= 32
        assert settings.ticket_signing_key is not None
        parse_private_key(settings.ticket_signing_key.get_secret_value())
        subnet = interpolate(
            compose()["networks"]["default"]["ipam"]["config"][0]["subnet"], values
        )
        assert [str(n) for n in settings.trusted_proxies] == [subnet]
        assert settings.log_format == "json"
    assert services["workers"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(
        "http://jaeger:4318}"
    )


def test_env_example_lists_every_variable_compose_uses():
    values, documented = env_example()
    used = {m["name"]: m["op"] for m in VARIABLE.finditer(compose_text())}
    required = {name for name, op in used.items() if op in (None, ":?", "?")}
    assert len(required) >= 7
    assert required <= set(values), required - set(values)  # set, so `up` works as copied
    assert set(used) <= set(values) | documented, set(used) - set(values) - documented
    assert set(values) | documented <= set(used), "variables compose.yaml does not use"
    explained = False  # each variable has a comment above it (or above its group)
    for line in (ROOT / ".env.example").read_text().splitlines():
        variable = re.fullmatch(r"(# )?([A-Z][A-Z0-9_]*)=.*", line)
        if variable:
            assert explained, f"{variable[2]} has no comment"
        else:
            explained = line.startswith("# ") and not line.startswith("# ----")


def test_the_runtime_image_has_no_embedded_server():
    """The servers of the embedded stack are the extra [embedded]; the image installs the
    base dependencies only, and copies every package of the project."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    distributions = packages_distributions()
    wanted = {distributions[module][0].lower() for module in embedded._PACKAGES.values()}
    extra = {dist_name(r) for r in project["optional-dependencies"]["embedded"]}
    base = {dist_name(r) for r in project["dependencies"]}
    assert wanted == extra
    assert not extra & base
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "['project']['dependencies']" in dockerfile
    assert "[embedded]" not in dockerfile.replace("extra [embedded]", "")
    assert 'CMD ["ticketblitz", "serve"' in dockerfile
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    for pattern in tool["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in dockerfile


def test_the_base_install_runs_without_the_embedded_servers(tmp_path):
    """Every module of the application imports without the extra, and `ticketblitz up` says
    in one line what to install."""
    blocked = sorted(embedded._PACKAGES.values())
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    roots = [p.rstrip("*") for p in tool["setuptools"]["packages"]["find"]["include"]]
    script = f"""
import importlib, pkgutil, sys
for name in {blocked!r}:
    sys.modules[name] = None  # as if not installed
for root in {roots!r}:
    package = importlib.import_module(root)
    for module in pkgutil.walk_packages(package.__path__, root + "."):
        importlib.import_module(module.name)
from ticketblitz.cli import main
sys.argv = ["ticketblitz", "up", "--port", "{free_port()}", "--data-dir", "{tmp_path / "d"}"]
main()
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("ticketblitz: error: the embedded stack needs")
    assert "install ticketblitz[embedded]" in error
    assert all(name in error for name in blocked)


def test_the_lock_pins_every_dependency():
    """requirements.lock (`make lock`) pins pyproject's pins, and everything they pull in at
    the version installed here (make and CI install with it)."""
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if m := re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line):
            lock[dist_name(m[1])] = m[2]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    pins = project["dependencies"] + [r for extra in extras for r in extra]
    for pin in pins:
        assert lock.get(dist_name(pin)) == pin.split("==")[1], f"{pin}: run `make lock`"
    todo = [Requirement(pin) for pin in pins]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:  # the installed closure of the pins
        requirement = todo.pop()
        key = (dist_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        installed = distribution(requirement.name)
        assert lock.get(key[0]) == installed.version, f"{key[0]}: run `make lock`"
        for text in installed.requires or []:
            needed = Requirement(text)
            if needed.marker is None or any(
                needed.marker.evaluate({"extra": extra}) for extra in requirement.extras or {""}
            ):
                todo.append(needed)
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet -c requirements.lock -e '.[dev,embedded]'" in makefile
    assert "$(STAMP): pyproject.toml requirements.lock" in makefile


# ---- the entry point (deploy/proxy) --------------------------------------------------------


def proxy_map() -> list[tuple[re.Pattern[str] | None, str]]:
    """The `$ticketblitz_api` map of the proxy: (regex or None for default, upstream)."""
    conf = (ROOT / "deploy/proxy/ticketblitz.conf").read_text()
    block = re.search(r'map "\$request_method \$uri" \$ticketblitz_api \{(.*?)\n\}', conf, re.S)
    assert block is not None
    entries = []
    for line in block[1].splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        key, upstream = line.rstrip(";").rsplit(None, 1)
        entries.append((None if key == "default" else re.compile(key.strip('"')[1:]), upstream))
    return entries


def routed(method: str, path: str) -> str:
    entries = proxy_map()
    for regex, upstream in entries:
        if regex is not None and regex.search(f"{method} {path}"):
            return upstream
    return next(upstream for regex, upstream in entries if regex is None)


def operations(router_factory) -> Iterator[tuple[str, str]]:
    api = FastAPI()
    api.include_router(router_factory())
    for path, methods in api.openapi()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        for method in methods:
            yield method.upper(), concrete


def test_the_proxy_sends_every_operation_to_the_api_that_serves_it():
    services = compose()["services"]
    upstreams = {
        f"{name}:{service_port(services[name])}": name for name in ("write-api", "read-api")
    }
    assert {upstream for _, upstream in proxy_map()} == set(upstreams)
    write_ops = set(operations(command_router))
    read_ops = set(operations(query_router))
    assert ("GET", "/api/v1/shows/x1/codes") in write_ops  # a read only the command API has
    for method, path in read_ops - write_ops:
        for verb in (method, "HEAD") if method == "GET" else (method,):
            assert upstreams[routed(verb, path)] == "read-api", (verb, path)
    for method, path in write_ops:
        assert upstreams[routed(method, path)] == "write-api", (method, path)
    # The write API serves both APIs: the entry point's /docs documents every operation.
    assert services["write-api"]["command"][2:4] == ["--api", "all"]
    for path in ("/docs", "/redoc", "/openapi.json", "/", "/healthz", "/readyz"):
        assert upstreams[routed("GET", path)] == "write-api"
    assert services["proxy"]["depends_on"] == {
        "write-api": {"condition": "service_healthy"},
        "read-api": {"condition": "service_healthy"},
    }
    # Posters and check-in batches pass the proxy: the API's own limits answer larger bodies.
    conf = (ROOT / "deploy/proxy/ticketblitz.conf").read_text()
    size = re.search(r"client_max_body_size (\d+)m;", conf)
    assert size is not None
    assert int(size[1]) * 1024 * 1024 > max(limit for _, _, limit in LARGER_BODIES)
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf


def run_proxy_start(tmp_path: Path, origins: str) -> subprocess.CompletedProcess[str]:
    """deploy/proxy/start.sh as the container runs it, with a stand-in for nginx."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    nginx = bin_dir / "nginx"
    nginx.write_text('#!/bin/sh\necho "nginx $*"\n')
    nginx.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CORS_ORIGINS": origins,
        "CORS_MAP": str(tmp_path / "cors-origins.map"),
    }
    script = ROOT / "deploy/proxy/start.sh"
    return subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)


def test_the_proxy_allows_the_cors_origins_it_is_given(tmp_path):
    service = compose()["services"]["proxy"]
    assert service["command"] == ["sh", "/etc/nginx/ticketblitz-start.sh"]
    assert "./deploy/proxy/start.sh:/etc/nginx/ticketblitz-start.sh:ro" in service["volumes"]
    done = run_proxy_start(tmp_path, "http://localhost:3000, https://tickets.example.com")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "nginx -g daemon off;"
    assert (tmp_path / "cors-origins.map").read_text().splitlines() == [
        '"http://localhost:3000" "http://localhost:3000";',
        '"https://tickets.example.com" "https://tickets.example.com";',
    ]
    assert run_proxy_start(tmp_path, "").returncode == 0
    assert (tmp_path / "cors-origins.map").read_text() == ""  # no origin allowed
    conf = (ROOT / "deploy/proxy/ticketblitz.conf").read_text()
    assert "include /etc/nginx/cors-origins.map;" in conf
    for bad in ("http://a.example/path", 'http://a";evil', "ftp://x", "localhost:3000", "*"):
        done = run_proxy_start(tmp_path, bad)
        assert done.returncode == 2, bad
        assert "not an origin" in done.stderr
        assert done.stdout == ""  # nginx never started


# ---- the Stripe emulator (deploy/stripe-emulator) ------------------------------------------


class _Webhooks(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes, str | None]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body, self.headers.get("Stripe-Signature")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_stripe_emulator_service_pays_and_calls_the_write_apis_webhook(tmp_path):
    """The `stripe` service's program with compose's environment (and .env.example's values):
    a payment through the real gateway succeeds, the webhook it sends is accepted by the
    gateway's signature check, and the payment survives a restart (its state volume)."""
    values, _ = env_example()
    services = compose()["services"]
    env = {k: interpolate(v, values) for k, v in services["stripe"]["environment"].items()}
    assert env["WEBHOOK_EVENTS"].split(",") == list(WEBHOOK_EVENTS)
    app_env = {k: interpolate(v, values) for k, v in services["workers"]["environment"].items()}
    assert env["WEBHOOK_SECRET"] == app_env["TICKETBLITZ_STRIPE_WEBHOOK_SECRET"]
    webhook_path = "/api/v1/payments/stripe/webhook"
    assert (
        env["WEBHOOK_URL"]
        == f"http://write-api:{service_port(services['write-api'])}{webhook_path}"
    )
    assert ("POST", webhook_path) in set(operations(command_router))
    assert "stripedata:/data" in services["stripe"]["volumes"]

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Webhooks)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = free_port()
    env |= {
        "PATH": os.environ["PATH"],
        "PORT": str(port),
        "STATE_FILE": str(tmp_path / "localstripe.pickle"),
        "WEBHOOK_URL": f"http://127.0.0.1:{receiver.server_address[1]}{webhook_path}",
    }
    # The service's own healthcheck, on this test's port.
    probe = [
        c.replace(":8420/", f":{port}/") for c in services["stripe"]["healthcheck"]["test"][1:]
    ]
    probe[0] = sys.executable

    def start() -> subprocess.Popen[bytes]:
        program = ROOT / "deploy/stripe-emulator/localstripe_server.py"
        process = subprocess.Popen([sys.executable, str(program)], env=env, cwd=tmp_path)
        wait_until(
            lambda: subprocess.run(probe, capture_output=True).returncode == 0, 30, "emulator"
        )
        return process

    gateway = StripeGateway(
        app_env["TICKETBLITZ_STRIPE_API_KEY"],
        app_env["TICKETBLITZ_STRIPE_WEBHOOK_SECRET"],
        api_base=f"http://127.0.0.1:{port}",
    )
    process = start()
    try:
        booking_id = uuid4()
        intent_id = gateway.create_intent(booking_id, 4200, "EUR")
        assert gateway.confirm_intent(booking_id, intent_id, "pm_card_visa").outcome == "succeeded"

        def succeeded_notice():
            for path, body, signature in list(_Webhooks.received):
                notice = gateway.parse_webhook(body, signature)  # raises on a bad signature
                if notice is not None and notice.outcome == "succeeded" and path == webhook_path:
                    return notice
            return None

        notice = wait_until(succeeded_notice, 30, "the payment_intent.succeeded webhook")
        assert (notice.intent_id, notice.booking_id) == (intent_id, booking_id)
        process.terminate()
        process.wait(30)
        process = start()
        assert gateway.intent_result(booking_id, intent_id).outcome == "succeeded"
    finally:
        process.terminate()
        process.wait(30)
        receiver.shutdown()
