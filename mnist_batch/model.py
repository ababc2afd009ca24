"""The network, device choice, and checkpoints (safetensors + metadata, no pickle)."""

import copy
import functools
import itertools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mnist_batch.checkpoints import (
    CLASSES,
    NOT_DIGIT,
    WEIGHTS,
    checkpoint_not_found,
    file_sha256,
    resolve_checkpoint,
    row_scores,
    split_scores,
)
from mnist_batch.errors import UserError, raise_if_interrupted, shown
from mnist_batch.files import write_atomic
from mnist_batch.options import check_device

MEAN, STD = 0.1307, 0.3081  # MNIST training-set pixel statistics, as the original notebook normalised


class LeNet(nn.Module):
    """The original notebook's network: two 3x3 convolutions, three linear layers, 60,074 parameters."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        # Pooling before ReLU gives the same numbers as the notebook's ReLU-then-pool (ReLU is
        # monotonic) with a quarter of the ReLU work.
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return F.log_softmax(self.fc3(x), dim=1)


class SmallBN(nn.Module):
    """The stronger network (--arch smallbn): three convolution + BatchNorm blocks of 16, 32 and
    64 channels and a 128-unit head; 98,938 parameters. About six times LeNet's compute, and
    still over 8,000 images/s per CPU thread; BatchNorm is what lets it absorb heavy augmentation."""

    def __init__(self, classes: int = 10, c1: int = 16, c2: int = 32, c3: int = 64, hidden: int = 128,
                 dropout: float = 0.2):
        super().__init__()

        def block(cin: int, cout: int, kernel: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True), nn.MaxPool2d(2)]

        self.features = nn.Sequential(*block(1, c1, 5), *block(c1, c2, 3), *block(c2, c3, 3))  # 28 -> 14 -> 7 -> 3
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c3 * 9, hidden, bias=False), nn.BatchNorm1d(hidden),
                                  nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, classes))

    def forward(self, x):
        return F.log_softmax(self.head(self.features(x)), dim=1)


BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
ARCHITECTURES = {"lenet": LeNet, "smallbn": SmallBN}  # name -> network class; the name is recorded in checkpoints


def build(architecture: str, classes: int = 10) -> nn.Module:
    """The network by name; `classes` 11 adds the "not a digit" output (smallbn only: LeNet stays
    exactly the notebook's network)."""
    return ARCHITECTURES[architecture](classes) if classes != 10 else ARCHITECTURES[architecture]()


def class_names(model: nn.Module) -> list[str]:
    outputs = list(model.modules())[-1].out_features
    return CLASSES + [NOT_DIGIT] * (outputs - len(CLASSES))


def architecture_of(model: nn.Module) -> str:
    return next(name for name, cls in ARCHITECTURES.items() if type(model) is cls)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) as the network was trained on."""
    return ((images.float() / 255.0 - MEAN) / STD).unsqueeze(1)


def pick_device(name: str) -> torch.device:
    """'auto' prefers cuda, then mps, then cpu; a named device that is absent is a user error."""
    check_device(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available[name]:
        raise UserError(f"device {name!r} is not available on this machine; use --device auto or cpu")
    return torch.device(name)


def saved_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint file holds: on the CPU, in the standard layout."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """The network's weights and statistics, copied where they are: a state to go back to."""
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def as_saved(model: nn.Module, device: torch.device) -> nn.Module:
    """The network as `load_checkpoint` would return it once `model` is saved: a safetensors
    round trip, then the same construction, so that figures measured on it are those that
    `evaluate` gives for the written file."""
    from safetensors.torch import load, save

    return network(architecture_of(model), len(class_names(model)), load(save(saved_state(model))), device)


def network(architecture: str, classes: int, tensors: dict[str, torch.Tensor], device) -> nn.Module:
    """The named network with these (checked) tensors, in eval mode on `device`, channels-last
    (about twice as fast on the CPU)."""
    model = build(architecture, classes)
    model.load_state_dict(tensors)
    return model.to(device, memory_format=torch.channels_last).eval()


def save_checkpoint(model: nn.Module, path: Path, metadata: dict) -> None:
    """Weights in safetensors; metadata values are JSON so that numbers and lists survive."""
    from safetensors.torch import save

    header = {"architecture": architecture_of(model), "mean": MEAN, "std": STD, "classes": class_names(model),
              "parameters": parameter_count(model)}
    header |= metadata

    def write(file) -> None:
        file.write(save(saved_state(model), metadata={k: json.dumps(v) for k, v in header.items()}))
        os.fchmod(file.fileno(), 0o644)  # whatever the umask: a bundled checkpoint must be readable

    write_atomic(Path(path), write)


# The metadata that is read back, and what each must be (a checkpoint from elsewhere may hold anything).
METADATA_TYPES = {"architecture": (str,), "hyperparameters": (dict,), "test_accuracy": (float, int),
                  "temperature": (float, int)}


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a checkpoint file, or a UserError naming what is wrong."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise checkpoint_not_found(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw_meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise_if_interrupted()  # a stop signal that torch turned into a ValueError
        raise UserError(
            f"checkpoint {path} is not a readable safetensors file ({error}); "
            "it may be truncated or of another type: retrain with `mnist-batch train`"
        ) from error
    metadata = {}
    for key, value in raw_meta.items():
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError as error:
            raise UserError(f"checkpoint {path} has unreadable metadata {shown(repr(key))}: {error}") from None
        except RecursionError:
            raise UserError(f"checkpoint {path}: metadata {shown(repr(key))} nests too deep to read; "
                            "use a checkpoint made by `mnist-batch train`") from None
    for key, kinds in METADATA_TYPES.items():
        if metadata.get(key) is not None and not isinstance(metadata[key], kinds):
            raise UserError(f"checkpoint {path}: metadata {key!r} is a {type(metadata[key]).__name__}, "
                            f"not a {kinds[0].__name__}; use a checkpoint made by `mnist-batch train`")
    temperature = metadata.get("temperature", 1.0)
    if temperature is None or not 0 < temperature < float("inf"):  # NaN fails too
        raise UserError(f"checkpoint {path}: metadata 'temperature' is {json.dumps(temperature)}, not a positive "
                        "number (the scores would be NaN or inverted); use a checkpoint made by `mnist-batch train`")
    return tensors, metadata


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """The network named in the metadata, in eval mode on `device` (channels-last), plus metadata. Checks
    the architecture, every tensor's name and shape, and that weights are finite floats."""
    tensors, metadata = read_checkpoint(path)
    architecture = metadata.get("architecture")
    if architecture not in ARCHITECTURES:
        raise UserError(
            f"checkpoint {path} is for architecture {shown(repr(architecture))}, "
            f"not one of {', '.join(ARCHITECTURES)}; "
            "use a checkpoint made by `mnist-batch train`"
        )
    classes = metadata.get("classes", CLASSES)
    if classes not in (CLASSES, CLASSES + [NOT_DIGIT]) or (len(classes) != 10 and architecture != "smallbn"):
        raise UserError(f"checkpoint {path} has classes {str(classes)[:80]}; expected the ten digits, "
                        f"and {NOT_DIGIT!r} for smallbn: use a checkpoint made by `mnist-batch train`")
    model = build(architecture, len(classes))
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in tensors:
            raise UserError(f"checkpoint {path} lacks tensor {name!r}; it is not a {architecture} checkpoint")
        found = tensors[name]
        if found.shape != tensor.shape:
            raise UserError(
                f"checkpoint {path}: tensor {name!r} has shape {tuple(found.shape)}, expected {tuple(tensor.shape)}"
            )
        if found.dtype != tensor.dtype:
            raise UserError(f"checkpoint {path}: tensor {name!r} is {found.dtype}, expected {tensor.dtype}; "
                            "retrain with `mnist-batch train`")
        if found.is_floating_point() and not torch.isfinite(found).all():
            raise UserError(f"checkpoint {path}: tensor {name!r} holds NaN or infinite values; "
                            "the training diverged: retrain with a lower --lr")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise UserError(f"checkpoint {path} has unexpected tensor {shown(repr(extra[0]))}; "
                        f"it is not a {architecture} checkpoint")
    return network(architecture, len(classes), tensors, device), metadata


class Inference:
    """A checkpoint loaded once for prediction on a device, with what rows record of it."""

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto", cpu_threads: int = 1):
        """`cpu_threads` > 1: on the CPU, pieces of a batch run side by side on that many threads.
        With torch set to one thread (classify does so), each piece is computed as it would be
        alone, so the rows are the same bit for bit whatever the count; torch's own threads
        split the work inside an operation, which rounds differently."""
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.device = pick_device(device)
        use_threads = self.device.type == "cpu" and cpu_threads > 1
        self.side_by_side = ThreadPoolExecutor(cpu_threads, "inference") if use_threads else None
        self.model, self.metadata = load_checkpoint(self.checkpoint, self.device)
        self.predictor = folded(self.model)  # what scores() runs; self.model stays trainable (adapt)
        self.name, self.sha256 = self.checkpoint.name, file_sha256(self.checkpoint)
        self.temperature = float(self.metadata.get("temperature", 1.0))
        self.knows_non_digits = len(self.metadata.get("classes", CLASSES)) > len(CLASSES)

    def scores(self, digits: np.ndarray, ok: list[bool],
               min_digit_score: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
        """The rows' digit probabilities and digit scores (checkpoints.row_scores)."""
        return row_scores(self.log_probs, digits, ok, self.temperature, min_digit_score)

    def log_probs(self, digits: np.ndarray) -> np.ndarray:
        """(n, 28, 28) uint8 digits -> (n, classes) float32 log-probabilities."""
        return predict_log_probs(self.predictor, digits, self.device, self.side_by_side).numpy()


def folded(model: nn.Module) -> nn.Module:
    """A copy of `model` for prediction only: each BatchNorm folded into the convolution or linear
    layer before it. The same outputs within 1e-6, one pass over memory less per layer."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    model = copy.deepcopy(model).eval()
    for sequence in [module for module in model.modules() if isinstance(module, nn.Sequential)]:
        for index, (layer, norm) in enumerate(itertools.pairwise(list(sequence))):
            if isinstance(norm, nn.BatchNorm2d) and isinstance(layer, nn.Conv2d):
                sequence[index], sequence[index + 1] = fuse_conv_bn_eval(layer, norm), nn.Identity()
            elif isinstance(norm, nn.BatchNorm1d) and isinstance(layer, nn.Linear):
                sequence[index], sequence[index + 1] = fuse_linear_bn_eval(layer, norm), nn.Identity()
    return model.to(memory_format=torch.channels_last)  # the folded weights' layout, as load_checkpoint gives


def bundled_checkpoints() -> list[dict]:
    """Name, architecture, parameters and recorded MNIST test accuracy of each bundled checkpoint."""
    from safetensors import safe_open

    listed = []
    for path in sorted(WEIGHTS.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
            # Counted from the stored shapes; buffers such as BatchNorm statistics are not parameters.
            parameters = meta.get("parameters") or sum(
                int(np.prod(f.get_slice(k).get_shape())) for k in f.keys() if not k.endswith(BUFFER_SUFFIXES))
        listed.append({"name": path.stem, "architecture": meta.get("architecture"), "parameters": parameters,
                       "mnist_test_accuracy": meta.get("test_accuracy"), "path": str(path)})
    return listed


def scores(model: nn.Module, digits: np.ndarray, device: torch.device, temperature: float = 1.0,
           side_by_side: ThreadPoolExecutor | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, 10) digit probabilities and the (n,) digit score of n (28, 28) uint8 digits (split_scores)."""
    return split_scores(predict_log_probs(model, digits, device, side_by_side).numpy(), temperature)


CPU_BATCH = 128  # images per forward pass on the CPU: activations that stay in the caches (smallbn 2x faster than 1024)


def predict_log_probs(model: nn.Module, digits: np.ndarray, device: torch.device,
                      side_by_side: ThreadPoolExecutor | None = None) -> torch.Tensor:
    """(n, 28, 28) uint8 digits -> (n, classes) float32 log-probabilities, on the CPU.
    On the CPU the digits go through in pieces of CPU_BATCH, on `side_by_side`'s threads if given.
    In eval mode, as accuracy_and_loss: a network left in train mode (adapt's rounds) would have
    BatchNorm use, and update, each piece's statistics."""
    model.eval()
    classes = len(class_names(model))
    if len(digits) == 0:
        return torch.zeros((0, classes))
    batch = torch.from_numpy(digits)
    if device.type != "cpu":
        if device.type == "cuda":
            batch = batch.pin_memory()  # the copy below then overlaps with compute
        with reproducible(device):  # without TF32: the CPU's rows within 1e-5 (TF32 moved them 2e-3)
            return forward(model, batch.to(device, non_blocking=True)).cpu()
    pieces = [batch[start : start + CPU_BATCH] for start in range(0, len(batch), CPU_BATCH)]
    run = functools.partial(forward, model)
    return torch.cat(list(side_by_side.map(run, pieces)) if side_by_side else [run(piece) for piece in pieces])


def forward(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():  # per thread: inference mode is thread-local
        return model(normalize(images).contiguous(memory_format=torch.channels_last)).float()


@contextmanager
def reproducible(device: torch.device):
    """On CUDA, deterministic cuDNN algorithms and full float32 (no TF32) for the duration: the
    same weights and images give the same figures in every run, in `train` as in `evaluate`."""
    if device.type != "cuda":
        yield
        return
    flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
         torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) = flags


def accuracy_and_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000) -> dict:
    """Loss, accuracy and per-class accuracy of `model` on uint8 images held on its device."""
    model.eval()
    losses, predictions = [], []
    with torch.inference_mode(), reproducible(images.device):
        for start in range(0, len(images), batch_size):
            # Accuracy among the digits: the "not a digit" output, if any, is the digit score's.
            output = torch.log_softmax(model(normalize(images[start : start + batch_size]))[:, :10], dim=1)
            target = labels[start : start + batch_size]
            losses.append(F.nll_loss(output, target, reduction="sum"))
            predictions.append(output.argmax(1))
    predicted = torch.cat(predictions)
    correct = predicted == labels
    per_class = [correct[labels == digit].float().mean().item() for digit in range(10)]
    return {
        "loss": torch.stack(losses).sum().item() / len(labels),
        "accuracy": correct.float().mean().item(),
        "per_class_accuracy": per_class,
    }
