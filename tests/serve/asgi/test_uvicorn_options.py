"""Every option of the installed uvicorn's command line, and every parameter of uvicorn.run, taken by zcopy.

The lists are read from uvicorn itself (a dev dependency, pinned in pyproject.toml), never written down here: when
uvicorn gains an option, these tests fail until zcopy accepts it. Each option is tried alone with each valid
value (parsed and planned, no server), and all of them at once on a real server, which must then serve.
"""

from __future__ import annotations

import inspect
import json
import socket
import ssl
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from ..tlsfiles import make_cert
from .conftest import REPO

click = pytest.importorskip("click")
uvicorn_main = pytest.importorskip("uvicorn.main")
uvicorn_config = pytest.importorskip("uvicorn.config")

APP = "tests.serve.asgi.uvapps:app"


def uvicorn_options() -> list[Any]:
    command = uvicorn_main.main
    command = getattr(command, "__self__", command)  # click.Command (its .main may be what the module exposes)
    assert isinstance(command, click.Command)
    return [p for p in command.params if isinstance(p, click.Option)]


def _literal(type_: Any) -> list[str]:
    return [str(v) for v in typing.get_args(type_)]


class Files:
    """Real files for the options that name one: a certificate, an env file, log configs, a directory."""

    def __init__(self, tmp: Path) -> None:
        self.cert, self.key = make_cert(tmp)
        self.both = tmp / "both.pem"  # certificate and key in one file: --ssl-certfile alone is enough
        self.both.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        self.env = tmp / "app.env"
        self.env.write_text("UVAPP_ENV=from-env-file\n")
        # uvicorn's own default configuration, as a user would save it for --log-config: it names uvicorn's classes.
        self.log_json = tmp / "log.json"
        self.log_json.write_text(json.dumps(uvicorn_config.LOGGING_CONFIG))
        self.log_yaml = tmp / "log.yaml"
        self.log_yaml.write_text(
            "version: 1\ndisable_existing_loggers: false\nloggers:\n  uvicorn.error: {level: INFO}\n"
        )
        self.log_ini = tmp / "log.ini"
        self.log_ini.write_text(
            "[loggers]\nkeys=root\n[handlers]\nkeys=h\n[formatters]\nkeys=f\n[logger_root]\nlevel=INFO\nhandlers=h\n"
            "[handler_h]\nclass=StreamHandler\nformatter=f\nargs=(sys.stderr,)\n[formatter_f]\nformat=%(message)s\n"
        )
        self.dir = tmp
        self.uds = str(tmp / "s.sock")


def values(option: Any, f: Files) -> list[list[str]]:
    """Command-line fragments that give ``option`` each kind of valid value uvicorn takes."""
    name, flag = option.name, option.opts[0]
    if option.is_flag:
        return [[flag]] + [[o] for o in option.secondary_opts]
    special: dict[str, list[str]] = {
        "host": ["127.0.0.1", "::1", "0.0.0.0"],
        "port": ["0", "8000"],
        "uds": [f.uds],
        "fd": ["3"],
        "reload_dirs": [str(f.dir)],
        "reload_includes": ["*.txt"],
        "reload_excludes": ["*.tmp"],
        "loop": _literal(uvicorn_config.LoopFactoryType),
        "http": _literal(uvicorn_config.HTTPProtocolType),
        "ws": _literal(uvicorn_config.WSProtocolType),
        "env_file": [str(f.env)],
        "log_config": [str(f.log_json), str(f.log_yaml), str(f.log_ini)],
        "forwarded_allow_ips": ["127.0.0.1,10.0.0.0/8", "*"],
        "root_path": ["/api"],
        "ssl_keyfile": [str(f.key)],
        "ssl_certfile": [str(f.both)],
        "ssl_keyfile_password": ["unused"],
        "ssl_version": [str(int(ssl.PROTOCOL_TLS_SERVER))],
        "ssl_cert_reqs": [str(int(ssl.CERT_NONE)), str(int(ssl.CERT_OPTIONAL)), str(int(ssl.CERT_REQUIRED))],
        "ssl_ca_certs": [str(f.cert)],
        "ssl_ciphers": ["ECDHE+AESGCM:ECDHE+CHACHA20"],
        "headers": ["X-A:1", "X-B:with:colons"],
        "app_dir": [str(REPO)],
        "ws_max_size": ["1048576"],
        "backlog": ["128"],
        "limit_max_requests": ["2"],
    }
    if name in special:
        given = special[name]
    elif isinstance(option.type, click.Choice):
        given = [str(c) for c in option.type.choices]
    elif isinstance(option.type, click.types.BoolParamType):
        given = ["true", "false", "1", "0", "yes", "no"]
    elif isinstance(option.type, (click.types.IntParamType, click.types.IntRange)):
        given = ["1"]
    elif isinstance(option.type, click.types.FloatParamType):
        given = ["0.5"]
    elif isinstance(option.type, click.Path):
        given = [str(f.env)]
    else:
        given = ["x"]
    cases = [[flag, v] for v in given]
    if name in ("ssl_keyfile", "ssl_keyfile_password"):  # a key needs its certificate (as in uvicorn)
        cases = [["--ssl-certfile", str(f.cert), "--ssl-keyfile", str(f.key), *c] for c in cases]
    return cases


# Runs in its own interpreter (the settings load env files and configure logging): parse, check and plan each
# command line as `zcopy serve` would, without serving; one result per case, None = accepted.
CHECK = r"""
import json, sys
from zcopy.cli import build_parser
from zcopy.cli import serve as cli
from zcopy.serve.startup import app_plan
import os
out = []
for argv, env in json.load(sys.stdin):
    os.environ.update(env)
    try:
        full = ["serve", *argv]
        args = build_parser(full).parse_args(full)
        cli._check(args)
        settings = cli.settings_of(args)
        app_plan(settings)
        out.append(None if all(k[8:].lower() in settings.explicit for k in env) else f"not taken from {env}")
    except SystemExit as exc:
        out.append(f"exit {exc.code}")
    except BaseException as exc:
        out.append(f"{type(exc).__name__}: {exc}")
    for key in env:
        del os.environ[key]
print(json.dumps(out))
"""


def test_every_uvicorn_option_and_value_is_accepted(tmp_path: Path) -> None:
    f = Files(tmp_path)
    cases: list[tuple[str, list[str], dict[str, str]]] = []
    options = uvicorn_options()
    assert len(options) > 40  # the list really came from uvicorn
    for option in options:
        if option.name == "version":
            continue  # exits: below
        base = ["--app", "tests.serve.asgi.uvapps:factory" if option.name == "factory" else APP, "--app-dir", str(REPO)]
        for case in values(option, f):
            cases.append((option.name, [*base, *case], {}))
            # The same value from uvicorn's environment variable (click's auto_envvar_prefix UVICORN).
            var = f"UVICORN_{option.name.upper()}"
            if option.is_flag:
                env = {var: "false" if case[-1] in option.secondary_opts else "true"}
                cases.append((option.name, [*base, *case[:-1]], env))
            else:
                cases.append((option.name, [*base, *case[:-2]], {var: case[-1]}))
    r = subprocess.run(
        [sys.executable, "-c", CHECK], input=json.dumps([[c, e] for _, c, e in cases]), capture_output=True,
        text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout.splitlines()[-1])
    refused = [(argv[4:], env, why) for (_, argv, env), why in zip(cases, results, strict=True) if why is not None]
    assert not refused, (refused, r.stderr[-3000:])
    assert {name for name, _, _ in cases} == {o.name for o in options} - {"version"}


def test_version_is_uvicorns_line_with_zcopys_name() -> None:
    from zcopy import __version__

    r = subprocess.run([sys.executable, "-m", "zcopy", "serve", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith(f"Running zcopy {__version__} with "), r
    assert r.stdout.rstrip().endswith(" on Linux")


def test_all_uvicorn_options_at_once_on_a_real_server(tmp_path: Path) -> None:
    """One real server with every option (first value each; --reload and --version apart): it serves over the
    inherited --fd with TLS, applies --env-file, --header, --no-server-header, --no-date-header,
    --reset-contextvars, writes access lines through the uvicorn --log-config, says why for what cannot apply,
    and stops by itself after --limit-max-requests 2."""
    f = Files(tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    chosen = {
        "log_level": ["--log-level", "info"],
        "use_colors": ["--no-use-colors"],
        "server_header": ["--no-server-header"],
        "date_header": ["--no-date-header"],
        "fd": ["--fd", str(listener.fileno())],
        "factory": ["--factory"],
        "workers": ["--workers", "1"],
        "loop": ["--loop", "asyncio"],
        "limit_concurrency": ["--limit-concurrency", "10"],
        "log_config": ["--log-config", str(f.log_json)],
        "ssl_keyfile": ["--ssl-keyfile", str(f.key)],
        "ssl_keyfile_password": ["--ssl-keyfile-password", "unused"],
        "http": ["--http", "h11"],
        "ws": ["--ws", "websockets"],
        "h11_max_incomplete_event_size": ["--h11-max-incomplete-event-size", "65536"],
        "limit_max_requests_jitter": ["--limit-max-requests-jitter", "0"],
    }
    argv = ["--app", "tests.serve.asgi.uvapps:factory"]
    for option in uvicorn_options():
        if option.name in ("reload", "version"):
            continue
        argv += chosen.get(option.name) or values(option, f)[0]
    p = subprocess.Popen(
        [sys.executable, "-m", "zcopy", "serve", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=REPO, pass_fds=(listener.fileno(),),
    )  # fmt: skip
    listener.close()
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        heads, bodies = [], []
        for _ in range(2):  # the request limit
            with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, ctx.wrap_socket(raw) as s:
                s.sendall(b"GET /json?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            heads.append(head.decode().lower())
            bodies.append(json.loads(body))
        out, err = p.communicate(timeout=60)  # exits by itself: --limit-max-requests 2
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    for head, body in zip(heads, bodies, strict=True):
        assert head.startswith("http/1.1 200"), head
        assert "\r\nx-a: 1\r\n" in head and "\r\nserver:" not in head and "\r\ndate:" not in head, head
        assert body["env"] == "from-env-file" and body["marker"] == "fresh", body  # --env-file, --reset-contextvars
    # uvicorn's own default logging configuration, given as a file: its access lines on stdout, the rest on stderr.
    assert out.count('"GET /json?q=1 HTTP/1.1" 200 OK') == 2, out
    assert f"zcopy running on socket ('127.0.0.1', {port})" in err, err
    assert "Maximum request limit of 2 exceeded. Terminating process." in err, err
    for why in (
        "--http h11: zcopy parses HTTP/1.1 with httptools",
        "--http2: zcopy does not implement HTTP/2",
        "--ws websockets: zcopy's WebSocket protocol is wsproto",
        "--timeout-worker-healthcheck: zcopy's supervisor",
        "--h11-max-incomplete-event-size 65536: applied as the largest request head",
        "--reload-dir/--reload-include/--reload-exclude/--reload-delay: need --reload",
        "Loading environment from",
    ):
        assert err.count(why) == 1, (why, err)  # said once
    assert "Traceback" not in err, err


def test_run_takes_every_keyword_of_uvicorn_run() -> None:
    import uvicorn

    from zcopy.serve import run

    theirs = inspect.signature(uvicorn.run).parameters
    ours = inspect.signature(run).parameters
    missing = [name for name in theirs if name not in ours]
    assert not missing, missing
    for name, param in theirs.items():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    # Same defaults, except where docs/serve.md's table says why (log_config: uvicorn's dict is "default" here).
    differ = {
        name for name, param in theirs.items()
        if name != "app" and param.default != ours[name].default and not (
            isinstance(param.default, int) and param.default == ours[name].default
        )
    }  # fmt: skip
    assert differ == {"log_config"}, differ


RUN = r"""
import socket, sys
from zcopy.serve import run
sock = socket.socket(fileno=int(sys.argv[1]))
kwargs = dict(
    host="127.0.0.1", port=0, fd=sock.fileno(), loop="asyncio", http="auto", http2=False, ws="auto",
    ws_max_size=1 << 20, ws_max_queue=8, ws_ping_interval=None, ws_ping_timeout=None, ws_per_message_deflate=False,
    lifespan="on", interface="asgi3", reload=False, reload_dirs=None, reload_includes=None, reload_excludes=None,
    reload_delay=0.25, workers=1, env_file=sys.argv[2], log_config={"version": 1, "disable_existing_loggers": False},
    log_level="info", access_log=True, proxy_headers=False, server_header=True, date_header=False,
    forwarded_allow_ips="127.0.0.1", root_path="", limit_concurrency=None, backlog=64, limit_max_requests=1,
    limit_max_requests_jitter=0, timeout_keep_alive=5, timeout_graceful_shutdown=5, timeout_worker_healthcheck=5,
    ssl_keyfile=None, ssl_certfile=None, ssl_keyfile_password=None, ssl_ca_certs=None, ssl_ciphers=None,
    ssl_context_factory=None, headers=[("X-Run", "yes")], use_colors=False, app_dir=".", factory=False,
    h11_max_incomplete_event_size=None, reset_contextvars=True,
)
sys.exit(run("tests.serve.asgi.uvapps:app", **kwargs))
"""


def test_run_with_every_keyword_serves(tmp_path: Path) -> None:
    """zcopy.serve.run(...) given every keyword of uvicorn.run: it serves one request (limit_max_requests=1)."""
    env = tmp_path / "app.env"
    env.write_text("UVAPP_ENV=run\n")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    p = subprocess.Popen(
        [sys.executable, "-c", RUN, str(listener.fileno()), str(env)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=REPO, pass_fds=(listener.fileno(),),
    )  # fmt: skip
    listener.close()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"x-run: yes" in head and b"\r\ndate:" not in head and b"server: zcopy" in head, head
    assert json.loads(body) == {"env": "run", "marker": "fresh", "path": "/json"}
