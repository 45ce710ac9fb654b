"""``plantwatch gateway add``: a broker account for one field gateway.

A gateway gets a user of its own on Mosquitto and ACL lines that let it
publish only its own topics: ``plant/<site>/<gateway>`` (JSON) and its
Sparkplug B edge node ``spBv1.0/<group>/<verb>/<gateway>[/…]`` (group = site
id, edge node = gateway id, as the Sparkplug host expects). One gateway's
credentials then cannot forge another's readings, plantwatch's alarm states,
or take over plantwatch's session (``deploy/mosquitto/``).

How the gateway proves who it is follows the broker's config:

* ``--auth certificate`` (the default; the shipped ``mosquitto.conf``): a
  client certificate whose CN is the user name, signed by the plant's CA
  (``--ca-cert``/``--ca-key``), with a new ECDSA P-256 key, made with the
  ``openssl`` CLI exactly as ``deploy/mosquitto/make-certs.sh client`` does.
  The broker takes the CN as the user name and never asks for a password
  (``use_identity_as_username``), so no password is made. Run it where the
  CA key is kept, not on the broker.
* ``--auth password`` (the config's password-only variant): a strong random
  password, printed once. With ``--password-file`` its hash is appended there
  (``mosquitto_passwd -b`` when installed; otherwise the same ``$7$``
  PBKDF2-SHA512 line that Mosquitto 2.0 writes, made here); without it the
  line is printed for the operator to add. ``mosquitto_passwd -b`` takes the
  password as an argument, so for the moment it runs other local users could
  read it in the process list: run this where only administrators log in.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from plantwatch.cli.common import console, load_plant_or_exit
from plantwatch.cli.root import app

__all__ = [
    "Auth",
    "CertificateError",
    "IssuedCertificate",
    "acl_lines",
    "check_name",
    "gateway_app",
    "issue_client_certificate",
    "mosquitto_password_line",
    "new_password",
]

gateway_app = typer.Typer(
    help="Broker accounts for field gateways (client certificate or password, ACL lines).",
    no_args_is_help=True,
)
app.add_typer(gateway_app, name="gateway")

PBKDF2_ITERATIONS = 101
"""What ``mosquitto_passwd`` 2.0 uses for ``$7$`` (PBKDF2-SHA512) hashes."""
_SALT_BYTES = 12
_FORBIDDEN = {"+": "an MQTT wildcard", "#": "an MQTT wildcard", "/": "a topic level separator",
              ":": "the password file's separator", "%": "an ACL pattern escape"}
MAX_NAME_CHARS = 64
CERT_DAYS = 825
"""Validity of an issued certificate, as ``make-certs.sh`` (``DAYS``)."""
_CN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Auth(enum.StrEnum):
    """How a gateway proves who it is to the broker (``--auth``)."""

    CERTIFICATE = "certificate"
    PASSWORD = "password"


class CertificateError(Exception):
    """A client certificate could not be issued; the message says why and the fix."""


def check_name(value: str, what: str) -> str:
    """``value`` if it can be one MQTT topic level and a broker user name; else ValueError.

    A gateway name or site id goes into the topic ``plant/<site>/<gateway>``,
    the password file (``user:hash``) and ACL lines: ``+ # /`` would widen or
    shift the topic, ``:`` would cut the password line, white space would cut
    an ACL line.
    """
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"{what} {value[:80]!r} is {len(value)} characters; the most is "
                         f"{MAX_NAME_CHARS}")
    for ch, why in _FORBIDDEN.items():
        if ch in value:
            raise ValueError(f"{what} {value!r} contains {ch!r} ({why}); use letters, digits, "
                             "'-', '_' and '.'")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError(f"{what} {value!r} contains white space or a control character; use "
                         "letters, digits, '-', '_' and '.'")
    return value


def new_password() -> str:
    """A random password of 192 bits, URL-safe (it can go in an ``mqtts://`` URL as is)."""
    return secrets.token_urlsafe(24)


def mosquitto_password_line(username: str, password: str, salt: bytes | None = None) -> str:
    """``username:$7$101$<salt>$<hash>``, the line Mosquitto 2.0's ``mosquitto_passwd`` writes.

    PBKDF2-HMAC-SHA512, 101 iterations, a 12-byte salt, a 64-byte key, both
    in standard base64 (``tests/test_broker_security.py`` checks that the
    broker accepts it).
    """
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    return (f"{username}:$7${PBKDF2_ITERATIONS}$"
            f"{base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}")


def acl_lines(username: str, site: str, gateway: str, group: str) -> list[str]:
    """The Mosquitto ACL block of one gateway: write its own topics, read its commands."""
    return [
        f"# gateway {gateway} of site {site} (plantwatch gateway add)",
        f"user {username}",
        f"topic write plant/{site}/{gateway}",
        f"topic write spBv1.0/{group}/+/{gateway}/#",
        f"topic read spBv1.0/{group}/NCMD/{gateway}",
        f"topic read spBv1.0/{group}/DCMD/{gateway}/#",
        "topic read spBv1.0/STATE/+",
    ]


def _users_in(password_file: Path) -> set[str]:
    try:
        text = password_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    except OSError as exc:
        console.print(f"[red]cannot read the password file {password_file}: "
                      f"{exc.strerror}[/red]")
        raise typer.Exit(2) from exc
    return {line.split(":", 1)[0] for line in text.splitlines() if ":" in line}


def _append_line(password_file: Path, line: str) -> None:
    """Append ``line``, creating the file readable by its owner only."""
    fd = os.open(password_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        if f.tell() > 0 and not password_file.read_bytes().endswith(b"\n"):
            f.write("\n")
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def _store_password(password_file: Path, username: str, password: str) -> str:
    """Add the user to the password file; returns how (for the operator)."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        _append_line(password_file, mosquitto_password_line(username, password))
        return "hashed here ($7$ PBKDF2-SHA512; mosquitto_passwd is not installed)"
    argv = [tool, "-b", str(password_file), username, password]
    if not password_file.exists():
        argv.insert(1, "-c")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        console.print(f"[red]mosquitto_passwd could not add {username!r} to {password_file}: "
                      f"{why[-1] if why else f'exit {done.returncode}'}[/red]")
        raise typer.Exit(1)
    return "with mosquitto_passwd"


@dataclass(frozen=True)
class IssuedCertificate:
    """The files of a client certificate just issued."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    replaced: bool
    """An earlier certificate of the same name was overwritten (it stays valid)."""


def _openssl(openssl: str, *args: str) -> None:
    done = subprocess.run([openssl, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise CertificateError(f"openssl {args[0]} failed: {why[-1] if why else done.returncode}")


def issue_client_certificate(username: str, ca_cert: Path, ca_key: Path, out_dir: Path,
                             days: int = CERT_DAYS, replace: bool = False) -> IssuedCertificate:
    """``out_dir/<username>.crt`` and ``.key``: a client certificate with CN = ``username``.

    The same certificate as ``make-certs.sh client`` (ECDSA P-256 key,
    SHA-256, ``clientAuth``, not a CA), signed by ``ca_cert``/``ca_key``, with
    a random serial so no serial file is written beside the CA. The broker's
    ``use_identity_as_username`` makes the CN the user name of its ACL, so the
    CN must be exactly the user name. Both files appear together or not at
    all; the key is readable by its owner only. Existing files are kept
    unless ``replace`` (the old certificate stays valid until it expires).
    """
    if not _CN.fullmatch(username):
        raise CertificateError(f"user name {username!r} cannot be a certificate's CN here; use "
                               "letters, digits, '-', '_' and '.'")
    for path, option in ((ca_cert, "--ca-cert"), (ca_key, "--ca-key")):
        if not path.is_file():
            raise CertificateError(
                f"no CA file {path} ({option}): make the plant's CA once with "
                f"'deploy/mosquitto/make-certs.sh ca {ca_cert.parent}', or pass {option} "
                "with the path of the CA that signed the broker's cafile")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertificateError("the openssl command is not installed (apt-get install openssl)")
    cert_file, key_file = out_dir / f"{username}.crt", out_dir / f"{username}.key"
    existing = [p for p in (cert_file, key_file) if p.exists()]
    if existing and not replace:
        raise CertificateError(f"{existing[0]} exists; pass --replace to issue a new key and "
                               "certificate (the old certificate stays valid until it "
                               "expires), or choose another --username")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{username}.", dir=out_dir))  # mode 0700
    try:
        key, csr, ext, crt = (work / n for n in ("key.pem", "req.csr", "ext.cnf", "cert.pem"))
        _openssl(openssl, "genpkey", "-algorithm", "EC", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-out", str(key))
        key.chmod(0o600)
        _openssl(openssl, "req", "-new", "-key", str(key), "-subj", f"/CN={username}",
                 "-out", str(csr))
        ext.write_text("basicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=clientAuth\n")
        _openssl(openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey",
                 str(ca_key), "-set_serial", str(secrets.randbits(127) + 1), "-days",
                 str(days), "-sha256", "-extfile", str(ext), "-out", str(crt))
        crt.chmod(0o644)
        os.replace(key, key_file)
        os.replace(crt, cert_file)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return IssuedCertificate(cert_file.resolve(), key_file.resolve(), ca_cert.resolve(),
                             replaced=bool(existing))


@gateway_app.command("add")
def gateway_add(
    name: Annotated[str, typer.Argument(help="the gateway id (its topic plant/<site>/NAME)")],
    site: Annotated[str, typer.Option(help="the site id the gateway belongs to")],
    group: Annotated[
        str | None, typer.Option(help="its Sparkplug B group (default: the site id)")
    ] = None,
    username: Annotated[
        str | None,
        typer.Option(help="its broker user name, the certificate's CN (default: NAME; unique "
                          "per broker)"),
    ] = None,
    auth: Annotated[
        Auth,
        typer.Option(help="certificate: issue a client certificate (the shipped broker); "
                          "password: a password (the broker's password-only variant)"),
    ] = Auth.CERTIFICATE,
    ca_cert: Annotated[
        Path, typer.Option(help="the plant CA's certificate (--auth certificate)")
    ] = Path("pki/ca.crt"),
    ca_key: Annotated[
        Path, typer.Option(help="the plant CA's key (--auth certificate)")
    ] = Path("pki/ca.key"),
    cert_dir: Annotated[
        Path | None,
        typer.Option(help="where to write <user>.crt and <user>.key (default: the directory "
                          "of --ca-cert)"),
    ] = None,
    days: Annotated[
        int, typer.Option(min=1, help="validity of the certificate in days")
    ] = CERT_DAYS,
    password_file: Annotated[
        Path | None,
        typer.Option(help="--auth password: Mosquitto password file to add the user to (else "
                          "the line is printed)"),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="issue a new certificate, or give a user already in the "
                                "password file a new password")
    ] = False,
    plant: Annotated[
        Path, typer.Option(help="plant config, to check that the site and gateway exist")
    ] = Path("config/plant.yaml"),
) -> None:
    """Create a gateway's broker user: its client certificate (or password) and ACL lines."""
    user = username if username is not None else name
    try:
        check_name(name, "gateway name")
        check_name(site, "site")
        check_name(group if group is not None else site, "Sparkplug group (--group)")
        check_name(user, "user name (--username)")
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if auth is Auth.CERTIFICATE and password_file is not None:
        console.print("[red]--password-file is for --auth password[/red]: the shipped broker "
                      "logs clients in by certificate (use_identity_as_username) and never "
                      "checks a password; see deploy/mosquitto/mosquitto.conf")
        raise typer.Exit(2)
    group = group if group is not None else site
    _check_against_plant(plant, site, name)

    if auth is Auth.CERTIFICATE:
        try:
            issued = issue_client_certificate(
                user, ca_cert, ca_key, cert_dir if cert_dir is not None else ca_cert.parent,
                days=days, replace=replace)
        except CertificateError as exc:
            console.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
            raise typer.Exit(1) from exc
        typer.echo(f"# MQTT account of gateway {name} (site {site}): its client certificate, "
                   "CN = its user name")
        typer.echo(f"username={user}")
        typer.echo(f"cert_file={issued.cert_file}")
        typer.echo(f"key_file={issued.key_file}")
        typer.echo(f"ca_file={issued.ca_file}")
    else:
        _check_password_file(password_file, user, replace)
        password = new_password()
        how = None if password_file is None else _store_password(password_file, user, password)
        typer.echo(f"# MQTT account of gateway {name} (site {site}); the password is not "
                   "shown again")
        typer.echo(f"username={user}")
        typer.echo(f"password={password}")
    typer.echo(f"# publishes JSON on plant/{site}/{name}, Sparkplug B as edge node {name} of "
               f"group {group}")
    if auth is Auth.PASSWORD and password_file is None:
        typer.echo("# password file line:")
        typer.echo(mosquitto_password_line(user, password))
    typer.echo("# ACL lines (append to the broker's acl_file):")
    for line in acl_lines(user, site, name, group):
        typer.echo(line)

    if auth is Auth.CERTIFICATE:
        console.print(f"issued {issued.cert_file} (CN={user}, valid {days} days) and its key "
                      f"{issued.key_file}. Give the gateway these two and {issued.ca_file}; "
                      "the key is secret: copy it to the gateway only, then delete it here.",
                      highlight=False)
        if issued.replaced:
            console.print(f"[yellow]the earlier certificate of {user!r} was overwritten "
                          "here but stays valid until it expires: remove it from the old "
                          "device (deploy/README.md, withdrawing a gateway)[/yellow]")
    elif how is not None:
        console.print(f"added {user!r} to {password_file} ({how}).", highlight=False)
    if auth is Auth.PASSWORD:
        console.print("[yellow]A password only works on a broker running the password-only "
                      "variant of deploy/mosquitto/mosquitto.conf; read its warning.[/yellow]")
    console.print("Add the ACL lines to the broker's acl_file, then reload the broker "
                  "(systemctl reload mosquitto). The broker uses the user name as the "
                  "gateway's client id (use_username_as_clientid).")


def _check_password_file(password_file: Path | None, user: str, replace: bool) -> None:
    if password_file is not None and user in _users_in(password_file) and not replace:
        console.print(f"[red]user {user!r} is already in {password_file}[/red]; pass "
                      "--replace to give it a new password (its old one stops working), or "
                      "choose another --username")
        raise typer.Exit(1)


def _check_against_plant(plant: Path, site: str, gateway: str) -> None:
    """Warn when the site or gateway is not in the plant: plantwatch would refuse its data."""
    if not plant.is_file():
        console.print(f"[yellow]plant file {plant} not found; site {site!r} not checked "
                      "(pass --plant)[/yellow]")
        return
    config = load_plant_or_exit(plant)
    sites = [s.id for s in config.sites]
    if site not in sites:
        console.print(f"[yellow]site {site!r} is not in {plant} (its sites: "
                      f"{', '.join(sites)}); plantwatch refuses readings of an unknown "
                      "site[/yellow]")
        return
    gateways = sorted({area.gateway or f"gw-{area.id}"
                       for s, area in config.areas() if s == site})
    if gateway not in gateways:
        console.print(f"[yellow]gateway {gateway!r} is no area's gateway in site {site!r} of "
                      f"{plant} (they are: {', '.join(gateways)}); plantwatch refuses "
                      "Sparkplug births of an unknown edge node[/yellow]")
