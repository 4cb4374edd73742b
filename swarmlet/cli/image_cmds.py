"""`swarm image ...`: ls, pull, load, import, rm -- on the images of the local node.

Images live on each node (as with `docker image`): these commands act on the store of
the node whose data dir is used, manager or worker. A service's tasks pull their image
on the worker that runs them; `swarm image pull` fetches ahead of time. References and
files are checked here before anything is sent; relative paths are made absolute (the
daemon runs on this machine but not in this directory).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli.common import data_dir_option, each_object, format_option, open_client
from swarmlet.cli.output import check_format, emit
from swarmlet.errors import SpecError
from swarmlet.imageref import parse
from swarmlet.units import format_age

app = typer.Typer(help="Manage the images of this node.", no_args_is_help=True)

LS_COLUMNS = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
NONE = "<none>"
_SI = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(size: int) -> str:
    """Bytes as `docker image ls` prints them: decimal units, 4 significant digits."""
    value, unit = float(size), 0
    while value >= 1000 and unit < len(_SI) - 1:
        value /= 1000
        unit += 1
    return f"{value:.4g}{_SI[unit]}"


def _split(ref: str) -> tuple[str, str]:
    """ "docker.io/library/busybox:latest" -> ("busybox", "latest")."""
    try:
        r = parse(ref)
    except SpecError:
        return ref, NONE
    repo = r.registry + "/" + r.repository if r.registry != "docker.io" else (
        r.repository.removeprefix("library/"))
    return repo, r.tag or NONE


def image_rows(images: list[pb.Image], now: float,
               no_trunc: bool = False) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """Table and JSON rows of `image ls`: one row per tag, `<none>` for untagged."""
    table: list[list[str]] = []
    rows: list[dict[str, Any]] = []
    for img in images:
        short = img.id if no_trunc else img.id.removeprefix("sha256:")[:12]
        created = format_age(max(0.0, now - img.created)) if img.created else ""
        for ref in list(img.tags) or [""]:
            repo, tag = _split(ref) if ref else (NONE, NONE)
            table.append([repo, tag, short, created, human_size(img.size)])
            rows.append({
                "repository": repo, "tag": tag, "image_id": img.id,
                "created": datetime.fromtimestamp(img.created, UTC).isoformat()
                if img.created else "",
                "size": img.size,
            })
    return table, rows


def _check_ref(ref: str) -> str:
    parse(ref)  # SpecError("image", ...) names the problem
    return ref


def _file(path: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpecError("file", f"{path}: no such file")
    return str(p.resolve())


@app.command("ls")
def ls(
    ctx: typer.Context,
    fmt: str = format_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show image IDs."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not shorten image IDs."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """List the images of this node."""
    fmt = check_format(fmt)
    with open_client(ctx, data_dir) as client:
        images = client.image_list()
    table, rows = image_rows(images, time.time(), no_trunc)
    if quiet:
        for img in images:
            typer.echo(img.id if no_trunc else img.id.removeprefix("sha256:")[:12])
        return
    emit(fmt, LS_COLUMNS, table, rows)


@app.command("pull")
def pull(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="REF", help="Image reference, e.g. busybox:latest."),
    insecure: bool = typer.Option(False, "--insecure",
                                  help="Allow plain HTTP for this registry."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Pull an image from its registry into this node's store."""
    _check_ref(ref)
    with open_client(ctx, data_dir) as client:
        img = client.image_pull(ref, insecure)
    typer.echo(f"Pulled {img.tags[0] if img.tags else ref}")
    typer.echo(f"Image ID: {img.id}")


@app.command("load")
def load(
    ctx: typer.Context,
    file: str = typer.Argument(None, metavar="FILE", help="OCI archive or docker save tarball.",
                               show_default=False),
    input_file: str = typer.Option(None, "--input", "-i", metavar="FILE",
                                   help="Same as FILE.", show_default=False),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Load images from an OCI archive or a `docker save` tarball."""
    chosen = file or input_file
    if not chosen:
        raise SpecError("file", "give the archive to load (swarm image load FILE)")
    path = _file(chosen)
    with open_client(ctx, data_dir) as client:
        images = client.image_load(path)
    for img in images:
        for tag in img.tags:
            typer.echo(f"Loaded image: {_familiar(tag)}")
        if not img.tags:
            typer.echo(f"Loaded image ID: {img.id}")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: str = typer.Argument(..., metavar="ROOTFS", help="Root filesystem tarball."),
    ref: str = typer.Argument(..., metavar="NAME:TAG", help="Name of the new image."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Make a one-layer image from a root filesystem tarball."""
    _check_ref(ref)
    path = _file(file)
    with open_client(ctx, data_dir) as client:
        img = client.image_import(path, ref)
    typer.echo(img.id)


@app.command("rm")
def rm(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(..., metavar="IMAGE...", help="References or image IDs."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Remove images (a reference removes that tag; an ID, all the image's tags)."""
    with open_client(ctx, data_dir) as client:
        results, failed = each_object(refs, client.image_remove)
    for images in results:
        for img in images:
            for tag in img.tags:
                typer.echo(f"Untagged: {_familiar(tag)}")
            if img.id:
                typer.echo(f"Deleted: {img.id}")
    if failed:
        raise typer.Exit(1)


def _familiar(ref: str) -> str:
    try:
        return parse(ref).familiar()
    except SpecError:
        return ref
