"""The network on the CPU without torch: the checkpoint exported once to ONNX, run by ONNX Runtime.

Importing torch takes about 1.4 s on a 2-core machine, longer than classifying 20,000 MNIST
digits. ONNX Runtime imports in 0.1 s and runs LeNet about 2.4x and smallbn 1.7x faster per
thread, with rows equal to torch's within 1e-5 (tests/test_onnx_inference.py). Exporting needs
torch and onnx, once per checkpoint: a bundled checkpoint's export ships beside it, others are
kept in the user's cache under the checkpoint's SHA-256. Where ONNX Runtime is missing, a GPU may
be present, or the export fails, the caller uses torch (model.Inference) as before.
"""

import functools
import io
import json
import os
import shlex
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mnist_batch import data
from mnist_batch.checkpoints import (
    CLASSES,
    WEIGHTS,
    checkpoint_not_found,
    file_sha256,
    resolve_checkpoint,
    row_scores,
)
from mnist_batch.errors import UserError, log, raise_if_interrupted, shown
from mnist_batch.files import write_atomic, write_in_folder

ONNX_BATCH = 128  # digits per run: as for torch, activations that stay in the caches (1024 is 1.3-1.8x slower)
# What an export holds and the checks its checkpoint passed: an export of another format is made again.
EXPORT_FORMAT = "1"
# Four fixed images the export answers as torch did when it was made (its metadata holds torch's
# answers): a damaged or altered export is made again rather than trusted for the rows.
PROBE = (np.arange(4 * 28 * 28).reshape(4, 28, 28) * np.array([0, 7, 31, 101])[:, None, None] % 256).astype(np.uint8)
PROBE_TOLERANCE = 1e-5  # of a probability: the rows' own contract with torch's
# Devices through which torch may find a GPU (NVIDIA, AMD, WSL); on a Mac, MPS.
ACCELERATOR_DEVICES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


class OnnxInference:
    """A checkpoint loaded once for prediction on the CPU, as model.Inference but without torch."""

    def __init__(self, checkpoint: Path, exported: bytes, sha256: str, cpu_threads: int = 1):
        """`sha256`: of the checkpoint's bytes that the export must be of, hashed once by the caller
        (hashed again here, a checkpoint rewritten meanwhile would put its hash on another's rows)."""
        onnxruntime = runtime()
        self.checkpoint, self.device = checkpoint, "cpu"
        self.name, self.sha256 = checkpoint.name, sha256
        options = onnxruntime.SessionOptions()
        # One thread per run, the pieces of a batch side by side: the same rows whatever the core count.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(exported, options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("checkpoint_sha256") != self.sha256:
            raise ValueError(f"the ONNX export is of another checkpoint than {checkpoint}")
        self.temperature = float(meta["temperature"])
        if not 0 < self.temperature < float("inf"):  # kept before checkpoints were refused for it: export again
            raise ValueError(f"the ONNX export of {checkpoint} has temperature {self.temperature}")
        self.knows_non_digits = int(meta["classes"]) > len(CLASSES)
        if meta.get("format") != EXPORT_FORMAT:
            raise ValueError(f"the ONNX export of {checkpoint} is of format {meta.get('format')}, not {EXPORT_FORMAT}")
        expected = np.exp(np.asarray(json.loads(meta["probe"]), np.float32))
        if np.abs(np.exp(self.run_piece(PROBE)) - expected).max() > PROBE_TOLERANCE:
            raise ValueError(f"the ONNX export of {checkpoint} does not give its checkpoint's answers")
        self.side_by_side = ThreadPoolExecutor(cpu_threads, "inference") if cpu_threads > 1 else None

    def scores(self, digits: np.ndarray, ok: list[bool],
               min_digit_score: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
        """The rows' digit probabilities and digit scores (checkpoints.row_scores)."""
        return row_scores(self.log_probs, digits, ok, self.temperature, min_digit_score)

    def log_probs(self, digits: np.ndarray) -> np.ndarray:
        """(n, 28, 28) uint8 digits -> (n, classes) float32 log-probabilities."""
        if len(digits) == 0:
            return np.zeros((0, len(CLASSES) + self.knows_non_digits), np.float32)
        pieces = [digits[start : start + ONNX_BATCH] for start in range(0, len(digits), ONNX_BATCH)]
        run = self.run_piece
        return np.concatenate(list(self.side_by_side.map(run, pieces) if self.side_by_side else map(run, pieces)))

    def run_piece(self, digits: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"digits": np.ascontiguousarray(digits, np.uint8)})[0]


def load(checkpoint: str | Path | None, device: str, cpu_threads: int = 1) -> OnnxInference | None:
    """The checkpoint through ONNX Runtime when the work is on the CPU and it can run there; None
    when torch must do it: a named accelerator or one 'auto' may find, or no ONNX Runtime."""
    if device not in ("cpu", "auto") or (device == "auto" and accelerator_may_be_present()):
        return None
    try:
        runtime()
    except ImportError:
        return None
    path = resolve_checkpoint(checkpoint)
    if not path.is_file():
        raise checkpoint_not_found(path)
    if not opens_as_safetensors(path):
        return None  # torch's reader says what is wrong with it, as before, without hashing it whole first
    try:
        sha256 = file_sha256(path)
    except OSError:
        return None
    for exported in stored_exports(path, sha256):
        try:
            return OnnxInference(path, exported, sha256, cpu_threads)
        except (*runtime_errors(), KeyError, ValueError):  # a damaged or foreign export: the next one, or a new one
            continue
    try:
        exported = export(path, sha256)
    except UserError:
        raise  # a bad checkpoint: torch would say the same
    except Exception as error:  # noqa: BLE001 - an exporter without onnx, or a torch that cannot export
        raise_if_interrupted()  # a stop signal that torch turned into an error of its own: no fallback
        log(f"note: classifying with torch: the checkpoint could not be exported to ONNX ({type(error).__name__})")
        return None
    keep_export(sha256, exported)
    return OnnxInference(path, exported, sha256, cpu_threads)


def opens_as_safetensors(path: Path) -> bool:
    """Whether the file is readable and starts as a safetensors file does (its header alone is read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            return True
    except (SafetensorError, OSError, ValueError):
        return False


def load_inference(checkpoint: str | Path | None, device: str, cpu_threads: int = 1):
    """The checkpoint loaded for prediction: through ONNX Runtime where it can serve (load), else
    torch. `cpu_threads` > 1: the pieces of a batch side by side on that many threads, each
    runtime on one thread of its own (its own threads would spin against classify's decoding
    workers, and would round differently on each machine)."""
    fast = load(checkpoint, device, cpu_threads)
    if fast is not None:
        return fast
    from mnist_batch.model import Inference

    if cpu_threads > 1:
        import torch

        torch.set_num_threads(1)
    return Inference(checkpoint, device, cpu_threads)


def runtime():
    """onnxruntime, imported with its telemetry off: on, it writes a session file named .ses into
    $TMPDIR (often /tmp, and classify often runs as root) on import. It reads the setting then
    only: the caller's environment (the Python API's) is left as it was."""
    if sys.modules.get("onnxruntime") is not None:  # imported before (None: known to be missing)
        return sys.modules["onnxruntime"]
    before = os.environ.get("ORT_DISABLE_TELEMETRY")
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    try:
        import onnxruntime
    finally:
        if before is None:
            del os.environ["ORT_DISABLE_TELEMETRY"]
        else:
            os.environ["ORT_DISABLE_TELEMETRY"] = before
    return onnxruntime


def runtime_errors() -> tuple[type[Exception], ...]:
    """What ONNX Runtime raises for a model it cannot load (they share no base class but Exception)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(value for value in vars(state).values() if isinstance(value, type) and issubclass(value, Exception))


def accelerator_may_be_present() -> bool:
    """Whether torch could find a GPU here, without importing it (which takes seconds)."""
    return sys.platform == "darwin" or any(os.path.exists(device) for device in ACCELERATOR_DEVICES)


def stored_exports(checkpoint: Path, sha256: str):
    """Exports made before: beside a bundled checkpoint, then in the cache (a pass each: the
    session checks that the export names this checkpoint's SHA-256). The cache is looked at only
    when the bundled export did not serve."""
    if checkpoint.parent == WEIGHTS:
        yield from readable(checkpoint.with_suffix(".onnx"))
    folder = cache_folder()
    if folder is not None:
        try:
            descriptor = os.open(f"{sha256}.onnx", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            with os.fdopen(descriptor, "rb") as file:
                kept = file.read()
        except OSError:
            return  # none kept yet, or unreadable: an export is made
        finally:
            os.close(folder)
        yield kept


def readable(path: Path) -> list[bytes]:
    """The file's bytes, or none where it is missing or cannot be read (an install or a cache
    copied with other owners' permissions): an export is then made, as for a damaged one."""
    try:
        return [path.read_bytes()] if path.is_file() else []
    except OSError:
        return []


def cache_folder() -> int | None:
    """A descriptor of the folder where exports are kept (`<cache>/onnx`, named by the checkpoint's
    SHA-256): the user's own, never one that others may write to (an export planted there would
    decide the rows), nor a symlink. Checked on the descriptor that is then read and written
    through, so the folder cannot be swapped between the check and the use. None: no cache."""
    try:
        folder = data.cache_dir() / "onnx"
    except RuntimeError:  # no $HOME and no home in the password database
        return None
    place = shlex.quote(str(folder))  # for the commands a note offers
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if os.path.islink(folder):
            unusable_cache(folder, "is a symlink", f"remove the link (rm {place})")
        else:
            unusable_cache(folder, f"cannot be made or opened ({error.strerror or error})",
                           "set XDG_CACHE_HOME to a folder of your own")
        return None
    info = os.fstat(descriptor)
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        os.close(descriptor)
        if info.st_uid != os.getuid():
            unusable_cache(folder, f"belongs to user id {info.st_uid}",
                           f"make it yours (sudo chown -R \"$(id -un)\" {place}; chmod 700 {place}) or remove it")
        else:
            unusable_cache(folder, "can be written by others", f"make it private (chmod 700 {place})")
        return None
    return descriptor


@functools.cache
def unusable_cache(folder: Path, why: str, fix: str) -> None:
    """Once per run: without the cache, every run exports a checkpoint of one's own again, with torch
    (a second or two); the usual cause is a first run by root (sudo) that made the folder."""
    log(f"note: the export cache {shown(folder)} {why}, so it is not used and each run exports the checkpoint "
        f"again; {fix}")


def keep_export(sha256: str, exported: bytes) -> None:
    """Into the cache folder, atomically, through the descriptor cache_folder checked."""
    folder = cache_folder()
    if folder is None:
        return
    try:
        write_in_folder(folder, Path(f"{sha256}.onnx"), lambda file: file.write(exported), mode=0o600)
    except (OSError, UserError):  # a full or read-only cache: the next run exports again
        pass
    finally:
        os.close(folder)


def write_bundled_export(name: str) -> None:
    """weights/NAME.onnx from the bundled weights/NAME.safetensors (make bundle)."""
    checkpoint = WEIGHTS / f"{name}.safetensors"
    exported = export(checkpoint, file_sha256(checkpoint))
    write_atomic(checkpoint.with_suffix(".onnx"), lambda file: file.write(exported))


def export(checkpoint: Path, sha256: str) -> bytes:
    """The checkpoint's network as ONNX (uint8 digits in, log-probabilities out), with the
    checkpoint's SHA-256, temperature and class count, its format and torch's answers to PROBE in
    its metadata. Imports torch and onnx."""
    import onnx
    import torch

    from mnist_batch.model import folded, load_checkpoint, normalize

    network, metadata = load_checkpoint(checkpoint, "cpu")
    if file_sha256(checkpoint) != sha256:  # rewritten since hashed: the export would be kept under the old hash
        raise UserError(f"checkpoint {checkpoint} changed while it was being read; run again once it is written")

    class FromDigits(torch.nn.Module):  # the normalisation in the graph: one definition of it, model.normalize
        def __init__(self):
            super().__init__()
            self.network = folded(network)

        def forward(self, digits):
            return self.network(normalize(digits))

    from_digits, buffer = FromDigits().eval(), io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(from_digits, torch.zeros((1, 28, 28), dtype=torch.uint8), buffer, dynamo=False,
                          input_names=["digits"], output_names=["log_probs"], opset_version=17,
                          dynamic_axes={"digits": {0: "n"}, "log_probs": {0: "n"}})
    exported = onnx.load_from_string(buffer.getvalue())
    with torch.inference_mode():
        probe = from_digits(torch.from_numpy(PROBE)).tolist()
    onnx.helper.set_model_props(exported, {
        "format": EXPORT_FORMAT,
        "probe": json.dumps(probe),
        "checkpoint_sha256": sha256,
        "temperature": repr(float(metadata.get("temperature", 1.0))),
        "classes": str(len(metadata.get("classes", CLASSES))),
    })
    return exported.SerializeToString()
