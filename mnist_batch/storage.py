"""Object stores (s3://, gs://, az://) as inputs and outputs, through fsspec.

Credentials and endpoints come from each store's usual places (for S3: the AWS_* environment
variables, ~/.aws profiles, AWS_ENDPOINT_URL for S3-compatible stores such as MinIO); nothing
here reads, logs or records a secret.

Outputs: a run writes its parts and the merged file in a local cache folder keyed by the
output's URI (cache_folder), so --resume and --incremental work as for a local output; the
finished file is uploaded with one put, which an object store makes visible whole or not at
all (a multipart upload too appears only once complete). There is no lock on an object store:
two machines writing the same output URI at once are not stopped (README).

Inputs: a prefix is listed like a folder (hidden names skipped, image extensions only), each
object is read into memory and decoded by records.load; its identity (file_id) is its URI, and
its size and LastModified stand for a file's size and mtime.
"""

import hashlib
import os
import re
from datetime import datetime
from pathlib import Path

from mnist_batch import reading, records
from mnist_batch.discover import is_image_name, matches
from mnist_batch.errors import USAGE, UserError, shown
from mnist_batch.files import write_atomic

SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "hdfs"})
URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# One short try per request: an unreachable endpoint is reported in seconds, not after minutes of retries.
S3_OPTIONS = {"config_kwargs": {"connect_timeout": 10, "read_timeout": 60, "retries": {"max_attempts": 3}}}


def is_uri(text: object) -> bool:
    """An object-store URI (s3://, gs://, az://...); file:// is a local path (local_path)."""
    found = URI.match(str(text)) if isinstance(text, str) else None
    return bool(found) and found.group(1).lower() in SCHEMES


def local_path(text: str) -> str:
    """file:///data/x.parquet and local:///data/x.parquet -> /data/x.parquet; anything else unchanged."""
    for scheme in ("file://", "local://"):
        if text.lower().startswith(scheme):
            return text[len(scheme):]
    return text


def on_the_driver(text: str | os.PathLike | None) -> bool:
    """local://PATH: Ray Data's way of saying "this path, on the node the job was started from"."""
    return text is not None and os.fspath(text).lower().startswith("local://")


def output_location(text: str | os.PathLike | None) -> str | Path | None:
    """An --out or --out-dir as given: a URI stays a string (a Path would fold its //), the rest is a Path."""
    if text is None or isinstance(text, Path):
        return text
    return str(text) if is_uri(str(text)) else Path(local_path(str(text)))


def filesystem(uri: str):
    """(fsspec filesystem, path inside it) for a URI; a missing driver is one line saying what to install."""
    try:
        import fsspec
    except ImportError:
        raise UserError(f"{shown(uri)}: object storage needs fsspec: pip install 'mnist-batch[cloud]'", USAGE) from None
    scheme = URI.match(uri).group(1).lower()
    try:
        return fsspec.core.url_to_fs(uri, **(S3_OPTIONS if scheme in ("s3", "s3a") else {}))
    except ImportError as error:
        package = {"gs": "gcsfs", "gcs": "gcsfs"}.get(scheme, "adlfs" if scheme.startswith(("az", "abfs")) else "s3fs")
        raise UserError(f"{shown(uri)}: reading {scheme}:// needs {package} ({error}): pip install {package}",
                        USAGE) from None


def load_drivers(inputs) -> None:
    """Import the drivers of the stores that `inputs` name (s3fs and botocore: 0.3 CPU-s and 20 MB
    a process), connecting to none: workers forked afterwards share them instead of each importing
    its own. A missing driver is left to filesystem(), which says what to install."""
    for scheme in {URI.match(item).group(1).lower() for item in inputs if is_uri(item)}:
        try:
            import fsspec

            fsspec.get_filesystem_class(scheme)
        except ImportError:
            continue


def store_error(uri: str, error: BaseException) -> UserError:
    """The one line for a store that cannot be used: which URI, why, and what to do."""
    return UserError(f"{shown(uri)}: {store_problem(error)}", USAGE)


def store_problem(error: BaseException) -> str:
    """Why a store refused a request, and what to do, from the error its client raised."""
    name = type(error).__name__
    text = str(error).splitlines()[0] if str(error).strip() else name
    if "NoCredentials" in name or "credentials" in text.lower() and "invalid" not in text.lower():
        why = ("no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE "
               "(or the store's own variables), then run again")
    elif "EndpointConnection" in name or "Connect" in name or isinstance(error, (ConnectionError, TimeoutError)):
        why = f"cannot reach the store ({shown(text)}): check AWS_ENDPOINT_URL (or the store's address) and the network"
    elif isinstance(error, PermissionError) or "AccessDenied" in text or "InvalidAccessKey" in text:
        why = f"access denied ({shown(text)}): check the credentials and the bucket's permissions"
    elif isinstance(error, FileNotFoundError):
        why = f"not found ({shown(text)}): check the bucket's name and that it exists"
    else:
        why = f"{shown(text)}: check the URI, the credentials and the endpoint"
    return why


def check_bucket(uri: str) -> None:
    """Fail before any work, in one line, when the URI's bucket cannot be listed: a wrong name,
    missing credentials, an unreachable endpoint."""
    fs, path = filesystem(uri)
    bucket = path.split("/", 1)[0]
    try:
        fs.ls(bucket, detail=False)
    except Exception as error:  # each store's client raises its own types
        raise store_error(uri, error) from None


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    try:
        return fs.exists(path)
    except Exception as error:
        raise store_error(uri, error) from None


def cache_folder(uri: str) -> Path:
    """The local folder of the runs for one output URI (parts, the merged file before its upload,
    an --out-dir's result files): under $XDG_CACHE_HOME (~/.cache)/mnist-batch/outputs/, named by a
    hash of the URI, so that the same command finds it again for --resume and --incremental."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-batch" / "outputs"
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", uri.split("://", 1)[1].rstrip("/"))[-60:]
    return root / f"{name}-{digest}"


def upload(local: Path, uri: str) -> None:
    """One file to one object, in one put: the object appears whole or not at all."""
    fs, path = filesystem(uri)
    try:
        fs.put_file(str(local), path)
    except Exception as error:
        raise store_error(uri, error) from None


def join(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + name


RESULT_NAME = re.compile(r"^predictions-.*\.parquet$")


def mirror_results(prefix: str, folder: Path) -> None:
    """The result files (predictions-*.parquet) under an --out-dir URI, copied into `folder`
    (new or changed ones only, by size), and local copies of files gone from the store removed:
    incremental runs then read them as a local --out-dir's."""
    fs, path = filesystem(prefix)
    fs.invalidate_cache(path)  # the files another machine added since this process last listed
    try:
        listed = fs.ls(path, detail=True) if fs.exists(path) else []
    except Exception as error:
        raise store_error(prefix, error) from None
    remote = {os.path.basename(item["name"]): item["size"] for item in listed
              if item.get("type") == "file" and RESULT_NAME.match(os.path.basename(item["name"]))}
    folder.mkdir(parents=True, exist_ok=True)
    for local in folder.glob("predictions-*.parquet"):
        if local.name not in remote:
            local.unlink()
    for name, size in remote.items():
        local = folder / name
        if local.is_file() and local.stat().st_size == size:
            continue
        try:
            data = fs.cat_file(join(path, name))
        except Exception as error:
            raise store_error(join(prefix, name), error) from None
        write_atomic(local, lambda file, data=data: file.write(data))


def set_aside_in_store(prefix: str, folder: Path) -> None:
    """Result files that the incremental run set aside as unreadable (NAME.bad in the local
    mirror) are renamed in the store too, so that later runs do not fetch them again."""
    fs, path = filesystem(prefix)
    for bad in folder.glob("predictions-*.parquet.bad"):
        source = join(path, bad.name[: -len(".bad")])
        try:
            if fs.exists(source):
                fs.mv(source, join(path, bad.name))
        except Exception as error:
            raise store_error(join(prefix, bad.name), error) from None


def result_objects(uri: str) -> list[str]:
    """What `report URI` reads: the object itself, or the .parquet/.csv objects directly under a
    prefix (the Ray engine's folder of parts); none is a usage error naming the URI."""
    check_bucket(uri)
    fs, path = filesystem(uri)
    scheme = uri.split("://", 1)[0]
    try:
        listed = fs.ls(path, detail=True) if fs.isdir(path) else [fs.info(path)]
    except FileNotFoundError:
        listed = []
    except Exception as error:
        raise store_error(uri, error) from None
    found = sorted(f"{scheme}://{item['name']}" for item in listed if item.get("type") == "file"
                   and not os.path.basename(item["name"]).startswith(".")
                   and item["name"].lower().endswith((".parquet", ".csv")))
    if not found:
        raise UserError(f"result file {shown(uri)} not found; give .parquet or .csv objects written by classify",
                        USAGE)
    return found


def object_mtime_ns(info: dict) -> int | None:
    """An object's last-modified time in ns (S3 LastModified, GCS updated, Azure last_modified)."""
    for key in ("LastModified", "updated", "last_modified", "mtime"):
        value = info.get(key)
        if isinstance(value, datetime):
            return int(value.timestamp() * 1_000_000) * 1000
        if isinstance(value, str):
            try:
                return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1_000_000) * 1000
            except ValueError:
                continue
        if isinstance(value, (int, float)):
            return int(value * 1e9)
    return None


def list_objects(uri: str, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> dict[str, tuple]:
    """The objects an input URI names: itself when it is one object (always an input, as a named
    file is), else every object under the prefix with an image extension, no hidden name (a part
    starting with '.') and passing --include/--exclude. URI -> (size, mtime_ns)."""
    check_bucket(uri)  # a wrong bucket or missing credentials: said as such, not as "no such prefix"
    fs, path = filesystem(uri)
    fs.invalidate_cache(path)  # a long-lived process (the Python API) must not see an old listing
    scheme = uri.split("://", 1)[0]
    try:
        found = fs.find(path, detail=True)
        if not found:
            info = fs.info(path)  # FileNotFoundError for a prefix with nothing under it
            found = {path: info} if info.get("type") == "file" else {}
    except FileNotFoundError:
        raise UserError(f"{shown(uri)}: no such object or prefix; check the spelling", USAGE) from None
    except Exception as error:
        raise store_error(uri, error) from None
    base = path.rstrip("/")
    objects = {}
    for key, info in found.items():
        if info.get("type") != "file":
            continue
        whole = f"{scheme}://{key}"
        if key != base:  # under a prefix: only what a folder walk would take
            relative = key[len(base):].lstrip("/")
            if any(part.startswith(".") for part in relative.split("/")) or not is_image_name(key):
                continue
        if include and not matches(whole, include):
            continue
        if exclude and matches(whole, exclude):
            continue
        objects[whole] = (info.get("size"), object_mtime_ns(info))
    return objects


def load_object(uri: str, max_pixels: int) -> records.Decoded:
    """One object -> Decoded with its size and last-modified time; never raises for a bad object."""
    try:
        fs, path = filesystem(uri)
        info = fs.info(path)
        size, mtime = info.get("size"), object_mtime_ns(info)
        if size is not None and size > reading.MAX_FILE_BYTES:
            return records.Decoded("too_large", f"object is over {reading.MAX_FILE_BYTES >> 20} MiB", None, size, mtime)
        if not size:
            return records.Decoded("empty", "object is empty (0 bytes)", None, size, mtime)
        data = fs.cat_file(path)
    except FileNotFoundError:
        return records.Decoded("missing", "object not found (deleted during the run?)")
    except Exception as error:  # each store's client raises its own types
        return records.Decoded("unreadable", f"cannot read the object: {store_problem(error)}")
    return records.load(data, max_pixels)._replace(file_size=len(data), file_mtime_ns=mtime)


def preprocess_chunk(paths: list[str], max_pixels: int = reading.DEFAULT_MAX_PIXELS,
                     ids: list[str | None] | None = None) -> records.DecodedChunk:
    """Worker task: local files and objects -> one DecodedChunk (`ids`: see records.DecodedChunk.of)."""
    return records.DecodedChunk.of(paths, [load_object(path, max_pixels) if is_uri(path)
                                           else records.load_path(path, max_pixels) for path in paths], ids)
